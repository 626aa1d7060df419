"""The Slack bot (slack-bolt): HTTP Events at POST /slack/events, or Socket Mode."""
