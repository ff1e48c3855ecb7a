"""Cisco profile rules' alternatives, conditions and assignments (wire.cisco_rules), the
codec alone: what any rule text gives, and the version numbers' order. The phone's use of
them is in test_cisco_profile.py."""

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.wire.cisco_cfg import NotACiscoProfile
from labsim.wire.cisco_rules import assigned, choose, holds, parse_alternatives

MACROS = {"SWVER": "7.6.2", "PN": "SPA504G", "MA": "000e08abcdef"}
PIECES = st.sampled_from(['(', ')', '?', '!', '|', '"', '$SWVER', '$PN', '"$PN"', ' eq ', ' ne ', ' lt ', ' = ', ' != ',
                          ' < ', ' >= ', ' and ', '7.6.2', '7.6.2(b)', '12', 'GPP_A', ' a ', ';', '[--uid u]',
                          'http://h/x.xml', ' ', 'x'])


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=14).map("".join)))
def test_any_rule_text_reads_or_is_refused_with_the_reason(text):
    """The phone takes a rule from a profile it downloaded: whatever it says, the codec
    gives alternatives or NotACiscoProfile, never another exception."""
    try:
        alternatives = parse_alternatives(text)
        chosen = choose(alternatives, MACROS)
    except NotACiscoProfile as refused:
        assert str(refused)
        return
    assert alternatives and all(a.condition is not None for a in alternatives[:-1])
    if chosen is not None:
        assert all(isinstance(value, str) for value in assigned(chosen, MACROS).values())


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=14).map("".join)))
def test_any_condition_holds_or_not_or_is_refused_with_the_reason(text):
    """A Resync_Trigger is a bare condition (cisco._held_back_by_triggers): whatever it
    says, True, False or NotACiscoProfile."""
    try:
        assert holds(text, "7.6.2") in (True, False)
    except NotACiscoProfile as refused:
        assert str(refused)


def test_version_numbers_compare_part_by_part_then_by_suffix():
    ordered = ["1.0.9", "1.0.10", "1.0.31", "1.0.31(a)", "1.0.31(b)", "1.1.0", "2.0.3", "2.0.3(0412s)", "10.0.0"]
    for lower, higher in zip(ordered, ordered[1:]):
        assert holds(f"{lower} lt {higher}", "") and holds(f"{higher} > {lower}", "") and holds(f"{lower} != {higher}", "")
    assert holds("2.0.6 eq 2.0.6", "") and not holds("2.0.6 = 2.0.6(a)", "")


def test_only_a_single_letter_a_to_p_stands_for_a_gpp_parameter():
    [alternative] = parse_alternatives('( c = "1" ; ab = "2" ; nop = "3" ; User_ID_1_ = "4" ; )! http://h/x.xml')
    assert assigned(alternative, {}) == {"GPP_C": "1", "ab": "2", "nop": "3", "User_ID_1_": "4"}
