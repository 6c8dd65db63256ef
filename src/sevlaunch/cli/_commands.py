"""The ``sevlaunch`` command table, without click: each subcommand's module and the first
paragraph of its help, so ``sevlaunch --help`` lists the commands without importing them
(``tests/cli/test_fast.py`` checks each text against the command's own help)."""

from __future__ import annotations

PROG = "sevlaunch"
ROOT_HELP = "Launch AMD SEV confidential VMs with remote attestation."

#: name -> (``module:attribute``, the command's help up to its first blank line)
COMMANDS = {
    "owner": (
        "sevlaunch.cli.owner:owner",
        "The guest owner's side: verify a platform, make a launch session, check a measurement.",
    ),
    "platform": (
        "sevlaunch.cli.platform:platform",
        "Run and administer the emulated SEV platform (the emulated /dev/sev).",
    ),
    "demo": (
        "sevlaunch.cli.demo:demo",
        "Start an emulated SEV platform, a host manager and an attestation broker; register a "
        "workload whose secret is a disk passphrase; launch guests that unlock their disk with "
        "it; then launch once more with tampered firmware and show the refusal. Exit 0 only if "
        "every expected outcome happened.",
    ),
    "host": (
        "sevlaunch.cli.host:host",
        "The host manager (libvirt's role): domains, node SEV info, launch security, events.",
    ),
    "broker": (
        "sevlaunch.cli.broker:broker",
        "The guest owner's attestation service and its administration.",
    ),
    "launch": (
        "sevlaunch.cli.launch:launch",
        "Run an attested SEV launch: node SEV info, session, start paused, measurement check, "
        "secret injection, resume, boot. On any failure the domain is destroyed and the failing "
        "step is named. Exit 0 when every guest booted, 1 otherwise, 2 on usage errors.",
    ),
    "image": (
        "sevlaunch.cli.image:image",
        "Make test firmware and encrypted disk images for emulated launches.",
    ),
}
