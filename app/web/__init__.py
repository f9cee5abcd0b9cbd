"""The web page served at `/` (app/api/web.py): static HTML, CSS and one vanilla JS file, shipped as package data."""
