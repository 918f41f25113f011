"""The dashboard: hookline's web pages at /dashboard, on the API's port.

routes.py has the pages, session.py the signed session cookie and CSRF tokens, pages.py how
pages are rendered (templates/, static/), queries.py what only the overview reads.
"""
