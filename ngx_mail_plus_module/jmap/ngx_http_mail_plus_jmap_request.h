
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_JMAP_REQUEST_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_JMAP_REQUEST_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


/*
 * A JMAP request read and checked, and result references resolved
 * (ngx_http_mail_plus_jmap_request.c): pure functions of JSON, with no
 * HTTP request at hand, for the API and fuzz/jmap_request_fuzz.c.
 */


/* the capabilities known, as bits of a request's "using" */

#define NGX_HTTP_MAIL_PLUS_JMAP_CORE       0x0001
#define NGX_HTTP_MAIL_PLUS_JMAP_MAIL       0x0002
#define NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION 0x0004

#define NGX_HTTP_MAIL_PLUS_JMAP_CORE_URN   "urn:ietf:params:jmap:core"
#define NGX_HTTP_MAIL_PLUS_JMAP_MAIL_URN   "urn:ietf:params:jmap:mail"
#define NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION_URN                              \
    "urn:ietf:params:jmap:submission"

/* the nesting of a request's JSON, at most */

#define NGX_HTTP_MAIL_PLUS_JMAP_MAX_DEPTH  64


/* request-level errors (section 3.6.1), as problem details (RFC 7807) */

typedef enum {
    NGX_HTTP_MAIL_PLUS_JMAP_OK = 0,
    NGX_HTTP_MAIL_PLUS_JMAP_NOT_JSON,
    NGX_HTTP_MAIL_PLUS_JMAP_NOT_REQUEST,
    NGX_HTTP_MAIL_PLUS_JMAP_UNKNOWN_CAPABILITY,
    NGX_HTTP_MAIL_PLUS_JMAP_LIMIT
} ngx_http_mail_plus_jmap_problem_e;


typedef struct {
    ngx_http_mail_plus_jmap_problem_e   type;
    const char                         *detail;   /* a fixed text */
    const char                         *limit;    /* LIMIT: its name */
} ngx_http_mail_plus_jmap_problem_t;


/* a capability a client may name in "using" */

typedef struct {
    const char                         *urn;
    ngx_uint_t                          bit;
} ngx_http_mail_plus_jmap_capability_t;


/* a request, parsed and checked: what the calls read */

typedef struct {
    json_t                             *root;         /* owns the rest */
    json_t                             *calls;        /* methodCalls */
    json_t                             *created_ids;  /* or NULL */
    ngx_uint_t                          using;        /* capability bits */
} ngx_http_mail_plus_jmap_request_t;


/*
 * JSON text to a request: NGX_OK (req->root to be json_decref()ed),
 * NGX_DECLINED with the problem, NGX_ERROR (no memory)
 */

ngx_int_t ngx_http_mail_plus_jmap_parse(const u_char *text, size_t len,
    ngx_uint_t max_calls, ngx_http_mail_plus_jmap_capability_t *caps,
    ngx_http_mail_plus_jmap_request_t *req,
    ngx_http_mail_plus_jmap_problem_t *problem);

/*
 * the arguments of a call with their result references (section 3.7)
 * resolved against the responses so far (an array of [name, args, id]):
 * NGX_OK with *resolved (a new reference), NGX_DECLINED with *error
 * ("invalidArguments", "invalidResultReference", or "serverFail" when
 * the values would take more than *budget, which they are taken from),
 * NGX_ERROR
 */

ngx_int_t ngx_http_mail_plus_jmap_resolve(json_t *args, json_t *responses,
    size_t *budget, json_t **resolved, const char **error);

/* a JSON Pointer with "*" (section 3.7) into a value: a new reference */

json_t *ngx_http_mail_plus_jmap_pointer(json_t *value, const char *path);

/*
 * what a value costs in a response (its bytes, about), counted no further
 * than the budget: a value shared by references is counted each time
 */

size_t ngx_http_mail_plus_jmap_cost(json_t *value, size_t budget);


#endif /* _NGX_HTTP_MAIL_PLUS_JMAP_REQUEST_H_INCLUDED_ */
