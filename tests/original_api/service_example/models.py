# The reference's Service example, verbatim.
import nautilus
from nautilus.api.util import create_model_schema
from nautilus.network import crud_handler
import nautilus.models as models

class Model(models.BaseModel):
    name = models.fields.CharField()

class MyService(nautilus.Service):
    name = 'My Awesome Service'
    schema = create_model_schema(Model)
    action_handler = crud_handler(Model)


# The reference's Service.route example. Its RequestHandler (an aiohttp handler) cannot keep
# its meaning: an endpoint is a Django view, here a class-based one.
from django.http import HttpResponse
from django.views import View

@MyService.route('/')
class HelloWorld(View):
    def get(self, request):
        return HttpResponse('hello world')
