"""What a study shows: the live view, the dashboard server, reports, exports, summaries."""
