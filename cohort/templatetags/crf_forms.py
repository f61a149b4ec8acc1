"""{% crf_form form %}: {% crispy form %} for a CRF form, its layout rendered in Python
(cohort.forms.render_crf_form), and by crispy itself where that one leaves it to crispy."""

from crispy_forms.templatetags.crispy_forms_tags import CrispyFormNode, do_uni_form
from django import template

from cohort.forms import CrfForm, render_crf_form

register = template.Library()


class CrfFormNode(CrispyFormNode):
    def render(self, context):
        form = template.Variable(self.form).resolve(context)
        return (isinstance(form, CrfForm) and render_crf_form(form)) or super().render(context)


@register.tag(name="crf_form")
def crf_form(parser, token):
    node = do_uni_form(parser, token)
    return CrfFormNode(node.form, node.helper, template_pack=node.template_pack)
