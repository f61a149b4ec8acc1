"""`{{ message|said }}`: a query message as the reader sees it, an automatic check's in their own
language (cohort.queries.message_text)."""

from django import template

from cohort import queries

register = template.Library()


@register.filter
def said(message) -> str:
    return queries.message_text(message.text, message.template, message.values)
