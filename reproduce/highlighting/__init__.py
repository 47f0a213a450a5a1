"""Highlighting (``alstm highlight``): a video's class, its attended moments, and the report.

The pipeline (`pipeline`) cuts the video into windows (`windows`), scores them with one or more
checkpoints, gathers the typed results (`results`), finds the moments (`moments`), and writes
``highlights.json``, the report (`report`, with its `thumbnails`) and the highlight video
(`summary_video`).
"""
