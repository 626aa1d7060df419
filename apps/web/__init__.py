"""The web surface: the Q&A page with OIDC sign-in, the JSON API, the admin page."""
