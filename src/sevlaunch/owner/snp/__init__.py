"""The guest owner's side of SEV-SNP: the launch digest, ID blocks, and the report verifier."""
