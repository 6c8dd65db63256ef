"""sevlaunch: attested launches of AMD SEV confidential virtual machines.

The package follows the 13-step SEV launch flow designed on libvir-list in 2017:
``formats`` and ``crypto`` hold the byte layouts and cryptography of the SEV API,
``owner`` is the guest owner's toolkit, and the IO layers (``platform``, ``vmm``,
``host``, ``broker``, ``cli``) build on them.
"""

__version__ = "0.1.0"
