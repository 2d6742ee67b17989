"""Board identity: the project's device CA, certificate requests, provisioning
(docs/provision.md, docs/decisions/0012-identity.md)."""
