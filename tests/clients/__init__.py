"""The service checked by the feed clients people really use (feedparser, rss2email)."""
