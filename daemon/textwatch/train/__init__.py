"""Training the text detector in PyTorch and exporting it as darknet cfg + weights.

The daemon never imports this package: it needs the optional `torch` extra.
`recipe` is the schema of config/train.toml (torch-free, so the CLI can parse
`textwatch train` arguments without torch); `data` mixes synthetic scenes
(`synth`) and real images (`realdata`) through `augment`; `loss` is the
YOLOv4 loss; `trainer` is `textwatch train`. The network itself is
`textwatch.detect.torchnet`, the inference twin of the darknet graph that
training builds on.
"""
