"""People who use the gateway: accounts with roles, sessions and the audit of what they read and did."""
