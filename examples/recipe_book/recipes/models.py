from django.db import models


class Recipe(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    servings = models.PositiveIntegerField(default=1)
    minutes = models.PositiveIntegerField(null=True, blank=True)
    vegetarian = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # the id of the user who wrote it: set by the gateway (RecipeBookAPI.owners), never by a client
    owner = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    # a private recipe is read by its owner only (RecipeBookAPI.read_rules)
    private = models.BooleanField(default=False)

    def __str__(self):
        return self.name
