from django.db import models


class Ingredient(models.Model):
    name = models.CharField(max_length=200, unique=True)
    calories_per_100g = models.DecimalField(max_digits=7, decimal_places=2, null=True, blank=True)

    def __str__(self):
        return self.name
