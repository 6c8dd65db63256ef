"""SEV-SNP certificates and signatures on pyca/cryptography: AMD's X.509 chain (ARK → ASK or
ASVK → VCEK or VLEK, RSA-PSS SHA-384), the VCEK's AMD extensions, the product CRL, and
ECDSA P-384 with SNP's little-endian encodings. Submodules import on demand."""
