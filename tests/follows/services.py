import nautilus


class Follows(nautilus.ConnectionService):
    """``user`` → ``user``: the related names tell the two columns apart."""

    from_service = ("user", "follower")
    to_service = ("user", "followed")
