"""{% kept "name" value ... %}...{% endkept %}: a fragment of every page's frame (the navbar's links, the
footer) rendered once per process for each language and each combination of the values it names,
then kept: the same output, without its URL reversals, translations and static lookups on every
request (about a sixth of a form page's CPU).

The fragment may depend on nothing else than those values, the active language, the URL prefix and
what is fixed for the process (URLs, static files, settings): never on the request, the user or the
CSRF token, which stay outside it.
"""

from django import template
from django.urls import get_script_prefix
from django.utils import translation

register = template.Library()

# A handful of entries: each fragment's few value combinations, times the languages.
LIMIT = 256
_kept: dict[tuple, str] = {}


def _key_value(value):
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    if isinstance(value, bool | int | str | type(None)):
        return value
    raise template.TemplateSyntaxError(f"{{% kept %}} is keyed on plain values, not {type(value).__name__}")


class KeptNode(template.Node):
    def __init__(self, name: str, values: list[template.base.FilterExpression], nodelist: template.NodeList):
        self.name, self.values, self.nodelist = name, values, nodelist

    def render(self, context):
        key = (
            self.name,
            translation.get_language(),
            get_script_prefix(),
            context.autoescape,
            *(_key_value(value.resolve(context)) for value in self.values),
        )
        found = _kept.get(key)
        if found is None:
            found = self.nodelist.render(context)
            if len(_kept) < LIMIT:
                _kept[key] = found
        return found


@register.tag
def kept(parser, token):
    bits = token.split_contents()
    if len(bits) < 2 or bits[1][0] not in "\"'":
        raise template.TemplateSyntaxError('{% kept "name" value ... %} needs a quoted name')
    nodelist = parser.parse(("endkept",))
    parser.delete_first_token()
    return KeptNode(bits[1][1:-1], [parser.compile_filter(bit) for bit in bits[2:]], nodelist)
