"""Metaservices: obmin answers service metadata requests itself, from the registry. Pure.

SPEC 3.4 and X-Road's service metadata protocols (PR-META, PR-MREST): SOAP ``listMethods``,
``allowedMethods`` and ``getWsdl``; REST ``listMethods``, ``allowedMethods`` and
``getOpenAPI``; ``GET /listClients``; Trembita's ``GET /wsdl?...``. Every function takes the
registry snapshot and the request's values and returns a `MetaAnswer` or raises `MetaError`;
documents are read through the `DocumentReader` the caller passes in.
"""

from gateway.meta.clients import answer_list_clients
from gateway.meta.common import DocumentReader, MetaAnswer, MetaError
from gateway.meta.rest import REST_METASERVICES, answer_rest_metaservice, is_rest_metaservice
from gateway.meta.soap import SOAP_METASERVICES, answer_soap_metaservice, is_metaservice
from gateway.meta.wsdl import WSDL_ENDPOINT_ADDRESS, anonymise_wsdl, answer_wsdl_query

__all__ = [
    "REST_METASERVICES",
    "SOAP_METASERVICES",
    "WSDL_ENDPOINT_ADDRESS",
    "DocumentReader",
    "MetaAnswer",
    "MetaError",
    "anonymise_wsdl",
    "answer_list_clients",
    "answer_rest_metaservice",
    "answer_soap_metaservice",
    "answer_wsdl_query",
    "is_metaservice",
    "is_rest_metaservice",
]
