
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the JMAP request parser and result references:
 * the input is a request's JSON text; ngx_http_mail_plus_jmap_parse()
 * reads it as the API does (at most 16 calls, the core capability
 * known), and the calls of an accepted request run as Core/echo would:
 * each one's arguments resolved against the responses before it, with
 * a budget of 64 KB for what they answer, and answered with them.
 *
 * Oracles: an accepted request is an object whose methodCalls has at
 * most 16 calls of [string, object, string]; a refusal names its type
 * and a detail (and "maxCallsInRequest" for the limit); a resolution
 * fails with one of the three error types, never adds to the budget,
 * and what it answers costs no more than the call's own arguments and
 * what it took from the budget; no leak (ASan).
 *
 * sources: jmap/ngx_http_mail_plus_jmap_request.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_mail_plus_jmap_request.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>


#define FUZZ_MAX_CALLS  16
#define FUZZ_BUDGET     65536


static ngx_http_mail_plus_jmap_capability_t  fuzz_caps[] = {
    { NGX_HTTP_MAIL_PLUS_JMAP_CORE_URN, NGX_HTTP_MAIL_PLUS_JMAP_CORE },
    { NULL, 0 }
};


static void
fuzz_calls(ngx_http_mail_plus_jmap_request_t *req)
{
    size_t       i, budget, before, cost;
    json_t      *call, *responses, *resolved, *resp;
    ngx_int_t    rc;
    const char  *error;

    responses = json_array();
    assert(responses != NULL);

    budget = FUZZ_BUDGET;

    json_array_foreach(req->calls, i, call) {

        error = NULL;
        before = budget;

        rc = ngx_http_mail_plus_jmap_resolve(json_array_get(call, 1),
                                             responses, &budget, &resolved,
                                             &error);
        assert(budget <= before);

        if (rc == NGX_OK) {
            /* what the references brought was taken from the budget */

            cost = ngx_http_mail_plus_jmap_cost(resolved, 2 * FUZZ_BUDGET);
            assert(cost <= before - budget
                           + ngx_http_mail_plus_jmap_cost(
                                 json_array_get(call, 1), 2 * FUZZ_BUDGET)
                           + 2);

            resp = json_pack("[sOs]",
                             json_string_value(json_array_get(call, 0)),
                             resolved,
                             json_string_value(json_array_get(call, 2)));
            json_decref(resolved);

        } else {
            assert(rc == NGX_DECLINED);
            assert(resolved == NULL);
            assert(strcmp(error, "invalidArguments") == 0
                   || strcmp(error, "invalidResultReference") == 0
                   || strcmp(error, "serverFail") == 0);

            resp = json_pack("[s{ss}s]", "error", "type", error,
                             json_string_value(json_array_get(call, 2)));
        }

        assert(resp != NULL);
        assert(json_array_append_new(responses, resp) == 0);
    }

    json_decref(responses);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                              i;
    json_t                             *call, *v;
    u_char                             *text;
    ngx_int_t                           rc;
    ngx_http_mail_plus_jmap_request_t   req;
    ngx_http_mail_plus_jmap_problem_t   problem;

    /* a copy of its own, so that ASan sees any read past the text */

    text = malloc(size ? size : 1);
    assert(text != NULL);
    memcpy(text, data, size);

    rc = ngx_http_mail_plus_jmap_parse(text, size, FUZZ_MAX_CALLS, fuzz_caps,
                                       &req, &problem);

    if (rc == NGX_DECLINED) {
        assert(req.root == NULL);
        assert(problem.type != NGX_HTTP_MAIL_PLUS_JMAP_OK);
        assert(problem.detail != NULL);
        assert(problem.type != NGX_HTTP_MAIL_PLUS_JMAP_LIMIT
               || strcmp(problem.limit, "maxCallsInRequest") == 0);
        free(text);
        return 0;
    }

    assert(rc == NGX_OK);
    assert(json_is_object(req.root));
    assert(json_array_size(req.calls) <= FUZZ_MAX_CALLS);
    assert(req.using == 0 || req.using == NGX_HTTP_MAIL_PLUS_JMAP_CORE);

    json_array_foreach(req.calls, i, call) {
        assert(json_array_size(call) == 3);
        assert(json_is_string(json_array_get(call, 0)));
        assert(json_is_object(json_array_get(call, 1)));
        assert(json_is_string(json_array_get(call, 2)));
    }

    fuzz_calls(&req);

    /* a pointer of the request's own first call id into the request */

    call = json_array_get(req.calls, 0);

    if (call) {
        v = ngx_http_mail_plus_jmap_pointer(req.root,
                               json_string_value(json_array_get(call, 2)));
        json_decref(v);
    }

    json_decref(req.root);
    free(text);

    return 0;
}
