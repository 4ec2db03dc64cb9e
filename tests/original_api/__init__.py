"""Every example of the original library's reference (../shared/reference/nautilus-services-api.txt), as code.

Each lives where a Django model must: in an app's ``models.py`` (or ``services.py``), with
a settings module naming its service. Verbatim, except where the test says why not.
"""
