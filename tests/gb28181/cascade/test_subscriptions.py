"""Catalog subscriptions of an upper platform: SUBSCRIBE answered, changes NOTIFYed in the dialog."""

from __future__ import annotations

from dataclasses import replace

from tests.gb28181.cascade.conftest import BEIJING_TZ, OUR_ID, SHARED, UNSHARED, UPPER, Rig, request_from_upper
from tests.helpers import eventually
from vigil.gb28181.cascade.shares import GroupNode, SharedCamera, shared_view
from vigil.gb28181.cascade.subscriptions import catalog_changes
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    CatalogEvent,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    Result,
    ResultResponse,
    encode_manscdp,
    parse_manscdp,
)
from vigil.protocols.sip.message import SipRequest, SipResponse

CAM = SharedCamera(camera_id=1, gb_id=SHARED, name="Gate", region_code="32010201")


def item(camera: SharedCamera) -> CatalogItem:
    return CatalogItem(device_id=camera.gb_id, name=camera.name)


def test_changes_are_add_del_update_on_off() -> None:
    other = SharedCamera(camera_id=2, gb_id=UNSHARED, name="Yard", region_code="32010201")
    assert catalog_changes({}, {SHARED: (CAM, True)}, item) == [
        CatalogItem(device_id=SHARED, name="Gate", event=CatalogEvent.ADD)
    ]
    assert catalog_changes({SHARED: (CAM, True)}, {SHARED: (CAM, True)}, item) == []
    assert catalog_changes({SHARED: (CAM, True)}, {SHARED: (CAM, False)}, item) == [
        CatalogItem(device_id=SHARED, event=CatalogEvent.OFF)
    ]
    renamed = replace(CAM, name="Main gate")
    assert catalog_changes({SHARED: (CAM, False)}, {SHARED: (renamed, True)}, item) == [
        CatalogItem(device_id=SHARED, name="Main gate", event=CatalogEvent.UPDATE),
        CatalogItem(device_id=SHARED, event=CatalogEvent.ON),
    ]
    assert catalog_changes({SHARED: (CAM, True), UNSHARED: (other, True)}, {SHARED: (CAM, True)}, item) == [
        CatalogItem(device_id=UNSHARED, event=CatalogEvent.DEL)
    ]


def subscribe(expires: str | None = "600", event: str = "Catalog;id=7", call_id: str | None = None) -> SipRequest:
    body = encode_manscdp(CatalogQuery(sn=9, device_id=OUR_ID), tz=BEIJING_TZ, charset=Charset.GB2312)
    request = request_from_upper("SUBSCRIBE", OUR_ID, body=body, content_type="Application/MANSCDP+xml")
    request.headers["Event"] = event
    if expires is not None:
        request.headers["Expires"] = expires
    if call_id is not None:
        request.headers["Call-ID"] = call_id
    return request


def notifies(rig: Rig) -> list[tuple[SipRequest, CatalogNotify]]:
    out = []
    for request in rig.sip.sent:
        if request.method == "NOTIFY":
            message = parse_manscdp(request.body, tz=BEIJING_TZ)
            assert isinstance(message, CatalogNotify)
            out.append((request, message))
    return out


async def test_subscribe_then_changes_are_notified_in_the_dialog(rig: Rig) -> None:
    request = subscribe()
    response = await rig.handler.handle_request(request, UPPER)
    assert isinstance(response, SipResponse) and response.status == 200
    assert response.headers["Expires"] == "600" and response.to_address.tag
    answer = parse_manscdp(response.body, tz=BEIJING_TZ)
    assert isinstance(answer, ResultResponse) and answer.result is Result.OK and answer.sn == 9
    assert rig.handler.subscriptions.active == 1
    assert rig.audit.entries[-1].action == "gb_upper.subscribe" and rig.audit.entries[-1].allowed

    assert await rig.handler.subscriptions.poll() == []  # nothing changed yet: nothing is sent
    rig.cameras.streaming.clear()  # the shared camera stops streaming
    rig.share(1, 2)  # and a second camera is shared
    changes = await rig.handler.subscriptions.poll()
    assert {(c.device_id, c.event) for c in changes} == {(SHARED, CatalogEvent.OFF), (UNSHARED, CatalogEvent.ADD)}
    sent = notifies(rig)
    assert len(sent) == 2  # page size 1
    for notify, body in sent:
        assert notify.call_id == request.call_id
        assert notify.from_address.tag == response.to_address.tag
        assert notify.to_address.tag == request.from_address.tag
        assert notify.headers["Event"] == "Catalog;id=7"
        assert notify.headers["Subscription-State"].startswith("active;expires=")
        assert body.device_id == OUR_ID and body.sum_num == 1
    added = next(b.items[0] for _, b in sent if b.items[0].event is CatalogEvent.ADD)
    assert added.name == "Yard" and added.parent_id == OUR_ID

    rig.share()  # nothing shared any more: the cameras go, then the region they hung under
    changes = await rig.handler.subscriptions.poll()
    assert [(c.device_id, c.event) for c in changes] == [
        (SHARED, CatalogEvent.DEL),
        (UNSHARED, CatalogEvent.DEL),
        ("32010201", CatalogEvent.DEL),
    ]

    # Unsubscribe in the same dialog.
    bye = subscribe("0", call_id=request.call_id)
    bye.headers["To"] = str(response.to_address)
    response = await rig.handler.handle_request(bye, UPPER)
    assert isinstance(response, SipResponse) and response.status == 200 and response.headers["Expires"] == "0"
    assert rig.handler.subscriptions.active == 0


async def test_the_notifier_polls_by_itself(rig: Rig) -> None:
    response = await rig.handler.handle_request(subscribe(), UPPER)
    assert isinstance(response, SipResponse) and response.status == 200
    rig.share(1, 2)
    await eventually(lambda: any(b.items[0].device_id == UNSHARED for _, b in notifies(rig)))


async def test_bad_subscriptions_are_refused(rig: Rig) -> None:
    wrong_event = await rig.handler.handle_request(subscribe(event="presence"), UPPER)
    assert wrong_event is not None and wrong_event.status == 489
    no_expires = await rig.handler.handle_request(subscribe(expires=None), UPPER)
    assert no_expires is not None and no_expires.status == 400
    assert rig.handler.subscriptions.active == 0
    assert [e.allowed for e in rig.audit.entries] == [False, False]


async def test_a_group_shared_later_is_notified_node_first_and_withdrawn_node_last(rig: Rig) -> None:
    bg, vo = "32010200002150000001", "32010200002160000001"
    groups = {bg: GroupNode(bg, "交通", "business_group"), vo: GroupNode(vo, "路口", "virtual_organization", bg, bg)}
    rig.all_cameras[1] = replace(rig.all_cameras[1], group_id=vo)  # camera 2 (UNSHARED) is in the organisation
    response = await rig.handler.handle_request(subscribe(), UPPER)
    assert isinstance(response, SipResponse) and response.status == 200

    rig.store.view = shared_view(
        camera_ids=[1], region_codes=[], regions=rig.regions, cameras=rig.all_cameras, group_ids=[vo], groups=groups
    )
    changes = await rig.handler.subscriptions.poll()
    assert [(c.device_id, c.event) for c in changes] == [
        (bg, CatalogEvent.ADD),
        (vo, CatalogEvent.ADD),
        (UNSHARED, CatalogEvent.ADD),
    ]
    assert changes[2].parent_id == vo and changes[1].business_group_id == bg

    rig.share(1)  # the organisation is no longer shared
    changes = await rig.handler.subscriptions.poll()
    assert [(c.device_id, c.event) for c in changes] == [
        (UNSHARED, CatalogEvent.DEL),
        (bg, CatalogEvent.DEL),
        (vo, CatalogEvent.DEL),
    ]


def test_a_camera_moved_to_another_group_is_an_update() -> None:
    moved = replace(CAM, group_id="32010200002160000002")
    assert catalog_changes({SHARED: (CAM, True)}, {SHARED: (moved, True)}, item) == [
        CatalogItem(device_id=SHARED, name="Gate", event=CatalogEvent.UPDATE)
    ]
