"""Third-party-style subjects the meta-tests point the suite at: ``*_correct`` modules must pass
every property of their role, ``*_wrong`` modules must fail (each docstring names the mistake)."""
