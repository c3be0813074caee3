"""What happens between detection and the subscriber: tracks, frames, consolidation, filters."""
