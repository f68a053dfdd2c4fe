"""The registry client: orch pull, push, login and logout over the OCI distribution API.

Modules: `names` (where a reference lives: registry host, repository, credentials key),
`manifest` (media types, platform choice; pure), `auth` (the WWW-Authenticate challenge,
Bearer tokens and Basic), `credentials` (~/.config/orch/auth.json), `client` (HTTP requests
to one registry: manifests, blobs, uploads), `progress` (bars or plain lines), `pull` and
`push` (the transfers, with the image store).
"""
