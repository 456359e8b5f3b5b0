"""What _compat_channels relies on, pinned on the installed Channels."""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer

from svc_infra.websocket.scaleout._compat_channels import inmemory_groups


async def test_the_in_memory_layer_keeps_a_live_group_table() -> None:
    layer = InMemoryChannelLayer()
    groups = inmemory_groups(layer)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    assert set(groups["g"]) == {channel}  # the same mapping, updated in place
    assert isinstance(groups["g"][channel], float)
    await layer.group_discard("g", channel)
    assert not groups.get("g")
