"""The API's JSON parser: DRF's, except that a body nested too deeply (or an integer too long
to convert) is a 400 instead of a RecursionError or ValueError deep inside a view."""
import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from labeling.errors import Invalid
from labeling.parsing import json_value


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except UnicodeDecodeError as exc:
            raise ParseError(f"The body is not {encoding}: {exc}.") from None
        try:
            return json_value(text, what="The body")
        except Invalid as exc:
            raise ParseError(exc.message) from None
