"""The host manager (libvirt's role): domain XML, secrets, the QEMU command line, and the
daemon that runs guests. ``domxml``, ``secrets`` and ``qemu_cmdline`` do no IO of their own."""
