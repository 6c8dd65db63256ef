"""The host manager (libvirt's role): domain XML, secrets, the QEMU command line, and the
daemon that runs guests. ``domxml``, ``secrets``, ``validate``, ``logs`` and ``qemu`` do no IO
of their own."""
