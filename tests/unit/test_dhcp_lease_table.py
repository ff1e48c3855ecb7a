"""The DHCP server's lease table (labsim/services/dhcp_leases.py): a lease held again and
again keeps one entry in the expiry heap, and still expires at its latest time."""

from labsim.services.dhcp_leases import BOUND, OFFERED, LeaseTable

MAC, OTHER = bytes.fromhex("001565000001"), bytes.fromhex("001565000002")


def test_a_lease_renewed_many_times_keeps_one_expiry_entry_and_expires_at_its_last_time():
    table = LeaseTable()
    table.hold(MAC, "10.1.0.10", OFFERED, 30.0)
    for n in range(1000):  # an ACK for every renewal: each holds it an hour from then
        table.hold(MAC, "10.1.0.10", BOUND, 3600.0 + n)
    assert len(table._expiry) == 1
    assert list(table.pop_expired(30.0)) == [] and len(table._expiry) == 1  # the offer's time: rescheduled
    assert list(table.pop_expired(4598.0)) == [] and table.by_mac(MAC).state == BOUND
    expired = list(table.pop_expired(4599.0))
    assert [lease.mac for lease in expired] == [MAC] and table._expiry == []


def test_a_lease_held_for_less_than_before_expires_at_the_earlier_time():
    table = LeaseTable()
    table.hold(MAC, "10.1.0.10", BOUND, 3600.0)
    table.hold(OTHER, "10.1.0.11", BOUND, 100.0)
    table.hold(MAC, "10.1.0.10", BOUND, 50.0)
    assert [lease.mac for lease in table.pop_expired(60.0)] == [MAC]
    assert [lease.mac for lease in table.pop_expired(3600.0)] == [OTHER]
