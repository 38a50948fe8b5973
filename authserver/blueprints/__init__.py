"""HTTP blueprints: auth, oauth, ifttt, account, health."""
