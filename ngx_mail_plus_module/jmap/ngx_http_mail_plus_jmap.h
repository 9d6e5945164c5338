
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_JMAP_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_JMAP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>


/*
 * The JMAP endpoint (RFC 8620), its parts and what they share:
 *
 *   ngx_http_mail_plus_jmap_module.c   directives, URLs, authentication
 *   ngx_http_mail_plus_jmap_session.c  the session resource
 *   ngx_http_mail_plus_jmap_api.c      the API: body, calls, responses
 *   ngx_http_mail_plus_jmap_request.c  the request parsed and checked, and
 *                                      result references: pure functions
 *                                      of JSON, with no request at hand
 *                                      (fuzz/jmap_request_fuzz.c)
 *
 * A method is a row of a table (name, capability, handler); the API runs
 * the calls of a request in order, each with its result references
 * resolved against the responses before it.  A handler may answer at
 * once (NGX_OK) or later (NGX_AGAIN, then ngx_http_mail_plus_jmap_done()
 * from whatever event finished its work): the next call waits for it.
 */


/* the capabilities known, as bits of a request's "using" */

#define NGX_HTTP_MAIL_PLUS_JMAP_CORE       0x0001

#define NGX_HTTP_MAIL_PLUS_JMAP_CORE_URN   "urn:ietf:params:jmap:core"

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


/* a method call and its handler */

typedef struct ngx_http_mail_plus_jmap_ctx_s  ngx_http_mail_plus_jmap_ctx_t;
typedef struct ngx_http_mail_plus_jmap_call_s  ngx_http_mail_plus_jmap_call_t;

/*
 * NGX_OK: call->result (or call->error) set; NGX_AGAIN: the handler
 * calls ngx_http_mail_plus_jmap_done() later, once, from an event;
 * NGX_ERROR: the call answers "serverFail"
 */

typedef ngx_int_t (*ngx_http_mail_plus_jmap_handler_pt)(
    ngx_http_mail_plus_jmap_call_t *call);

/* the request went away while a call waited: its work is to stop */

typedef void (*ngx_http_mail_plus_jmap_cancel_pt)(
    ngx_http_mail_plus_jmap_call_t *call);


typedef struct {
    const char                         *name;         /* "Core/echo" */
    ngx_uint_t                          capability;   /* bit, in "using" */
    ngx_http_mail_plus_jmap_handler_pt  handler;
} ngx_http_mail_plus_jmap_method_t;


struct ngx_http_mail_plus_jmap_call_s {
    ngx_http_mail_plus_jmap_ctx_t      *ctx;
    ngx_http_request_t                 *request;
    const char                         *name;
    const char                         *id;           /* the callId */
    json_t                             *args;         /* resolved; borrowed */
    ngx_uint_t                          index;        /* in methodCalls */

    /* the answer: an arguments object (owned), or an error */
    json_t                             *result;
    const char                         *error;        /* "invalidArguments" */
    const char                         *description;  /* fixed text, or
                                                         NULL */

    ngx_http_mail_plus_jmap_cancel_pt   cancel;       /* while NGX_AGAIN */
    void                               *data;         /* the handler's */
};


/*
 * a request's context: the account the route names, for the methods;
 * the login check's route is kept with its strings in the request's pool
 */

struct ngx_http_mail_plus_jmap_ctx_s {
    ngx_http_request_t                 *request;
    void                               *check;        /* ngx_mail_plus_
                                                         check_t, while it
                                                         runs */
    ngx_event_t                         delay;        /* a 401 sent late */

    ngx_str_t                           username;     /* as logged in */
    ngx_str_t                           account_id;
    ngx_str_t                           backend_login;
    void                               *pool;         /* ngx_mail_plus_
                                                         pool_t */
    void                               *server;       /* ngx_mail_plus_
                                                         server_t */
    in_port_t                           port;         /* its IMAP port */
    unsigned                            token:1;      /* a token login */
    unsigned                            api:1;        /* <prefix>api */
    unsigned                            tempfail:1;

    /* the API request */
    u_char                             *body;
    size_t                              body_len;
    size_t                              body_size;    /* allocated */
    ngx_http_mail_plus_jmap_request_t   req;
    json_t                             *responses;
    size_t                              budget;       /* of the response */
    ngx_uint_t                          next;         /* the call to run */
    ngx_http_mail_plus_jmap_call_t     *call;         /* waiting, or NULL */
};


/* the methods (ngx_http_mail_plus_jmap_api.c), a table for each part */

extern ngx_http_mail_plus_jmap_method_t      *ngx_http_mail_plus_jmap_methods[];
extern ngx_http_mail_plus_jmap_capability_t   ngx_http_mail_plus_jmap_caps[];

void ngx_http_mail_plus_jmap_done(ngx_http_mail_plus_jmap_call_t *call);
ngx_int_t ngx_http_mail_plus_jmap_api(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx);
void ngx_http_mail_plus_jmap_api_cleanup(ngx_http_mail_plus_jmap_ctx_t *ctx);

/* the session resource (ngx_http_mail_plus_jmap_session.c) */

ngx_int_t ngx_http_mail_plus_jmap_session(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx);
ngx_int_t ngx_http_mail_plus_jmap_state(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *state);

/* answers (ngx_http_mail_plus_jmap_module.c) */

ngx_int_t ngx_http_mail_plus_jmap_send_json(ngx_http_request_t *r,
    ngx_uint_t status, char *type, json_t *json);
ngx_int_t ngx_http_mail_plus_jmap_problem(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_mail_plus_jmap_problem_t *problem);
ngx_int_t ngx_http_mail_plus_jmap_url(ngx_http_request_t *r,
    const char *tail, ngx_str_t *url);


/* the limits of a location */

typedef struct {
    ngx_flag_t                          enable;
    size_t                              max_size_request;
    ngx_uint_t                          max_calls;
    ngx_uint_t                          max_objects_in_get;
    size_t                              max_size_upload;
    ngx_uint_t                          max_concurrent;
    ngx_str_t                           prefix;       /* the location's */
} ngx_http_mail_plus_jmap_loc_conf_t;


extern ngx_module_t  ngx_http_mail_plus_jmap_module;


#endif /* _NGX_HTTP_MAIL_PLUS_JMAP_H_INCLUDED_ */
