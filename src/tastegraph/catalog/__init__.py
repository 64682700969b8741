"""Catalog: turning image files, folders, manifests and URLs into pins."""
