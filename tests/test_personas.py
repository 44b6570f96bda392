def test_personas_build(members, stages):
    from apps.environments import permissions as perms

    dev = members["developer"]
    assert perms.may(dev, perms.RUN, stages["development"])
    assert not perms.may(dev, perms.RUN, stages["production"])
