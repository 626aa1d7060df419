"""The Teams bot (botbuilder): Bot Framework messages at POST /api/messages on the web server."""
