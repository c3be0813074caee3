"""`textwatch view`: the web page (live frames, track feed, status, history search) and its REST API."""
