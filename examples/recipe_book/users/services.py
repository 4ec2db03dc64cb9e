import nautilus

from .models import User


class UserService(nautilus.ModelService):
    model = User
