"""Credential rotation (issue #11; docs/rotate.md, docs/decisions/0016-rotation.md).

- `commands`: the signed commands a board's guard.rotate accepts (operator key, JWE values)
  and the trust-anchor statements (release anchors, threshold k of n);
- `operator`: the project's operator key (made by `mpguard init`, or `mpguard secret init`);
- `secrets`: set, stage, test, commit, revert over a board link;
- `identity`: a new identity key with a continuity proof and a new certificate;
- `anchors`: the project's anchor set, its versions, statements.
"""
