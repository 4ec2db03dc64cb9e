# The reference's APIGateway example, verbatim: a gateway's schema is built from the
# services' announcements now, so `schema = …` is refused with what to do instead.
# external imports
import nautilus

# local imports
from .schema import schema

class MyAPIGateway(nautilus.APIGateway):
    schema = schema
