"""Serving: the MLServer runtime (`runtime`, serving env only), request validation
(`validation`), MLServer settings and process helpers (`mlserver`), and the canary router
(`router`).

Nothing is imported here, so `import mainsail.serving` works in every env; import
`mainsail.serving.runtime` only where mlserver is installed.
"""
