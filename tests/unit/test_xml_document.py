"""Every vendor's XML parser reads through labsim.wire.xml_document: a declared encoding
that does not read is that parser's own error, never LookupError or a bare ValueError."""

import pytest

from labsim.wire import cisco_cfg, grandstream_cfg, polycom_cfg, snom_cfg
from labsim.wire.xml_document import NotXml, parse_xml


@pytest.mark.parametrize("encoding", ["TTF-8", "rot13", "utf-16", "utf-7", "idna", "undefined", "cp037"])
def test_every_vendors_xml_parser_gives_its_own_error_for_an_encoding_that_does_not_read(encoding):
    head = f'<?xml version="1.0" encoding="{encoding}"?>'.encode()
    with pytest.raises(NotXml):
        parse_xml(head + b"<a/>")
    parsers = [(cisco_cfg.parse_profile, b"<flat-profile/>", cisco_cfg.NotACiscoProfile),
               (snom_cfg.parse, b"<settings/>", snom_cfg.NotASnomSettingsFile),
               (grandstream_cfg.parse_provision, b"<gs_provision/>", grandstream_cfg.NotAGrandstreamFile),
               (polycom_cfg.parse_config, b"<polycomConfig/>", polycom_cfg.NotAPolycomFile)]
    for parse, root, error in parsers:
        with pytest.raises(error):
            parse(head + root)


@pytest.mark.parametrize("parse, body, error, message", [
    (grandstream_cfg.parse_provision, b"<gs_config/>", grandstream_cfg.NotAGrandstreamFile,
     "its root element is <gs_config>, not <gs_provision>"),
    (snom_cfg.parse, b"<?xml version='1.0'?><phone_settings/>", snom_cfg.NotASnomSettingsFile,
     "its root element is <phone_settings>, not <settings>"),
])
def test_a_root_element_the_parser_does_not_take_is_named_in_its_error(parse, body, error, message):
    with pytest.raises(error, match=message):
        parse(body)
    assert parse_xml(b"<a/>").tag == "a" and parse_xml(b"<b/>", roots=("a", "b")).tag == "b"
    assert snom_cfg.parse(b"<phone-settings/>") is not None  # snom's second root
