# The reference's ModelService example, verbatim.
import nautilus
import nautilus.models as models

class Model(models.BaseModel):
    name = models.fields.CharField()

class ServiceConfig:
    database_url = 'sqlite:////tmp/models.db'

class MyModelService(nautilus.ModelService):
    model = Model
    config = ServiceConfig
