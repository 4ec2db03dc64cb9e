# The reference's ConnectionService example, verbatim. It links 'service_one' to itself,
# so both of its columns would be named 'service_one': `manage.py check` says how to name them
# (the original raised ValueError for it too).
import nautilus

class ServiceConfig:
    database_url = 'sqlite:////tmp/connections.db'

class MyConnection(nautilus.ConnectionService):
    config = ServiceConfig

    from_service = ('service_one',)
    to_service = ('service_one',)
