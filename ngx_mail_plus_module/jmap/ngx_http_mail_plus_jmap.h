
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_JMAP_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_JMAP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>
#include "ngx_http_mail_plus_jmap_request.h"
#include "ngx_mail_plus_imap_client.h"


/*
 * The JMAP endpoint (RFC 8620), its parts and what they share:
 *
 *   ngx_http_mail_plus_jmap_module.c   directives, URLs, authentication
 *   ngx_http_mail_plus_jmap_session.c  the session resource
 *   ngx_http_mail_plus_jmap_api.c      the API: body, calls, responses
 *   ngx_http_mail_plus_jmap_request.c  the request parsed and checked, and
 *                                      result references: pure functions
 *                                      of JSON, with no request at hand
 *                                      (ngx_http_mail_plus_jmap_request.h,
 *                                      fuzz/jmap_request_fuzz.c)
 *   ngx_http_mail_plus_jmap_mailbox.c  Mailbox/get, /set, /changes,
 *                                      /query; Thread/get
 *   ngx_http_mail_plus_jmap_email.c    Email/get, /query, /set, /changes
 *   ngx_http_mail_plus_jmap_ahead.c    the next page of a listing read
 *                                      ahead while the client reads one
 *   ngx_http_mail_plus_jmap_submission.c
 *                                      Identity/get, EmailSubmission/set
 *                                      into the module's queue
 *   ngx_http_mail_plus_jmap_blob.c     <prefix>upload/, <prefix>download/
 *   ngx_mail_plus_imap_client.c        the asynchronous IMAP client
 *                                      (ngx_mail_plus_imap_client.h) the
 *                                      mail methods ask
 *   ngx_mail_plus_imap_keepalive.c     its idle sessions kept per worker
 *   ngx_mail_plus_imap_utf7.c          modified UTF-7 of mailbox names
 *   ngx_mail_plus_imap_parse.c         its reader of responses
 *
 * A method is a row of a table (name, capability, handler); the API runs
 * the calls of a request in order, each with its result references
 * resolved against the responses before it.  A handler may answer at
 * once (NGX_OK) or later (NGX_AGAIN, then ngx_http_mail_plus_jmap_done()
 * from whatever event finished its work): the next call waits for it.
 */


/* a JSON answer being written (ngx_http_mail_plus_jmap_json.c) */

typedef struct {
    ngx_pool_t                         *pool;
    ngx_chain_t                        *out;
    ngx_chain_t                       **last;
    ngx_buf_t                          *buf;
    size_t                              len;
    ngx_uint_t                          items;        /* the caller's */
} ngx_http_mail_plus_jmap_text_t;


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

    /* a second response after this one, with the same call id (RFC 8621
       7.5's implicit Email/set): its name and arguments (owned), or NULL */
    const char                         *implicit_name;
    json_t                             *implicit;

    /* the answer's "list", written already (Email/get's objects as their
       messages came), or NULL: the answer's other arguments in result */
    ngx_http_mail_plus_jmap_text_t     *list;

    /* a call of the module's own, not of the request (a read-ahead): what
       takes its end in place of ngx_http_mail_plus_jmap_done()'s answer */
    ngx_http_mail_plus_jmap_cancel_pt   finish;
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
    void                               *route;        /* ngx_mail_plus_
                                                         route_t, a copy
                                                         in r->pool, for
                                                         failover */
    ngx_str_t                           secret;       /* the password or
                                                         token, for the
                                                         backend's login;
                                                         wiped at the end */
    ngx_mail_plus_imap_t               *imap;         /* or NULL */
    ngx_array_t                        *mailboxes;    /* of ngx_http_mail_
                                                         plus_jmap_mailbox_t,
                                                         or NULL */
    unsigned                            token:1;      /* a token login */
    unsigned                            api:1;        /* <prefix>api */
    unsigned                            upload:1;     /* <prefix>upload/ */
    unsigned                            download:1;   /* <prefix>download/ */
    unsigned                            tempfail:1;
    unsigned                            created_implicit:1;  /* the
                                                         request had no
                                                         createdIds */

    /* the API request */
    u_char                             *body;
    size_t                              body_len;
    size_t                              body_size;    /* allocated */
    ngx_http_mail_plus_jmap_request_t   req;
    json_t                             *responses;
    ngx_array_t                        *lists;        /* of ngx_http_mail_
                                                         plus_jmap_list_t,
                                                         or NULL */
    size_t                              budget;       /* of the response */
    ngx_uint_t                          next;         /* the call to run */
    ngx_http_mail_plus_jmap_call_t     *call;         /* waiting, or NULL */
    void                               *ahead;        /* a next page to
                                                         read ahead, or
                                                         NULL (ngx_http_mail_
                                                         plus_jmap_ahead.c) */
};


/* a response whose "list" was written already */

typedef struct {
    ngx_uint_t                          index;        /* in responses */
    ngx_http_mail_plus_jmap_text_t     *list;
} ngx_http_mail_plus_jmap_list_t;


/* the methods (ngx_http_mail_plus_jmap_api.c), a table for each part */

extern ngx_http_mail_plus_jmap_method_t      *ngx_http_mail_plus_jmap_methods[];
extern ngx_http_mail_plus_jmap_capability_t   ngx_http_mail_plus_jmap_caps[];

extern ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_mailbox[];
extern ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_email[];
extern ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_submission[];
extern ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_email_set[];
extern ngx_http_mail_plus_jmap_method_t
    ngx_http_mail_plus_jmap_email_changes[];
extern ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_mailbox_set[];
extern ngx_http_mail_plus_jmap_method_t
    ngx_http_mail_plus_jmap_mailbox_query[];

/*
 * the request's session with the user's backend, opened at the first call
 * that asks for it (ngx_http_mail_plus_jmap_module.c), released with the
 * request: NULL only without memory
 */

ngx_mail_plus_imap_t *ngx_http_mail_plus_jmap_imap(
    ngx_http_mail_plus_jmap_ctx_t *ctx);

void ngx_http_mail_plus_jmap_done(ngx_http_mail_plus_jmap_call_t *call);

/* whether a later call of the request refers to this call's result */

ngx_uint_t ngx_http_mail_plus_jmap_referenced(
    ngx_http_mail_plus_jmap_call_t *call);

/*
 * a "/set" method's frame (ngx_http_mail_plus_jmap_set.c, RFC 8620
 * section 5.3): its arguments checked with maxObjectsInSet and the objects
 * of its answer made (freed with the request): NGX_OK, NGX_DECLINED with
 * call->error set, NGX_ERROR; ifInState checked against a state
 * (NGX_DECLINED: "stateMismatch"); a SetError added; the answer; the end
 * of a call that answered later; the list asked again after changes
 */

typedef struct ngx_http_mail_plus_jmap_set_s  ngx_http_mail_plus_jmap_set_t;

struct ngx_http_mail_plus_jmap_set_s {
    ngx_http_mail_plus_jmap_call_t     *call;
    ngx_http_mail_plus_jmap_handler_pt  answer;   /* the method's: fills
                                                     call->result */
    ngx_int_t                         (*begin)(ngx_http_mail_plus_jmap_set_t
                                               *set);  /* the method's, once
                                                          the list is known */
    json_t                             *created;
    json_t                             *not_created;
    json_t                             *updated;
    json_t                             *not_updated;
    json_t                             *destroyed;
    json_t                             *not_destroyed;
};

ngx_int_t ngx_http_mail_plus_jmap_set_start(
    ngx_http_mail_plus_jmap_call_t *call, ngx_http_mail_plus_jmap_set_t *set);
ngx_int_t ngx_http_mail_plus_jmap_set_in_state(
    ngx_http_mail_plus_jmap_set_t *set, u_char *state, size_t len);
ngx_int_t ngx_http_mail_plus_jmap_set_error(json_t *into, const char *key,
    const char *type, const char *property, const char *description);
ngx_int_t ngx_http_mail_plus_jmap_set_answer(
    ngx_http_mail_plus_jmap_set_t *set, u_char *old_state, size_t old_len,
    u_char *new_state, size_t new_len);
void ngx_http_mail_plus_jmap_set_finish(ngx_http_mail_plus_jmap_set_t *set,
    ngx_int_t rc);
/* the mailbox list asked (if this request has not yet), then set->begin;
   the set is the first member of call->data */
ngx_int_t ngx_http_mail_plus_jmap_set_run(ngx_http_mail_plus_jmap_set_t *set);
/* the changes made (if any): the mailbox list asked again, then the
   answer; the set is the first member of call->data */
ngx_int_t ngx_http_mail_plus_jmap_set_end(ngx_http_mail_plus_jmap_set_t *set,
    ngx_uint_t changed);

/* a call's "accountId": the user's own account is NGX_OK; else
   NGX_DECLINED with call->error set ("accountNotFound") */
ngx_int_t ngx_http_mail_plus_jmap_account(
    ngx_http_mail_plus_jmap_call_t *call);

/* creation ids of this request: record one; an id argument resolved
   ("#k1" to what k1 created; NULL if nothing did) */
ngx_int_t ngx_http_mail_plus_jmap_created(ngx_http_mail_plus_jmap_ctx_t *ctx,
    const char *creation_id, const char *id);
const char *ngx_http_mail_plus_jmap_id(ngx_http_mail_plus_jmap_ctx_t *ctx,
    const char *id);
ngx_int_t ngx_http_mail_plus_jmap_creation_ids(
    ngx_http_mail_plus_jmap_call_t *call, json_t *create);
ngx_int_t ngx_http_mail_plus_jmap_api(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx);
void ngx_http_mail_plus_jmap_api_cleanup(ngx_http_mail_plus_jmap_ctx_t *ctx);

/*
 * What the mail parts share.
 *
 * Ids (ngx_http_mail_plus_jmap_ids.c): a backend without OBJECTID (RFC
 * 8474; Dovecot 2.3 has none) gives no ids of its own, so ours are made
 * from what IMAP keeps stable:
 *
 *   mailbox  "M" and 16 lower-case hex digits: the first 8 bytes of the
 *            MD5 of the mailbox's whole name in UTF-8 (a rename gives a
 *            new id);
 *   email    "E" and the mailbox's 16 digits, "-", its UIDVALIDITY, "-",
 *            the message's UID (decimal): a message moved to another
 *            mailbox gets a new id, as it gets a new UID;
 *   thread   "T" and the email id's tail: a thread is one message;
 *   blob     "B" and the email id's tail (the whole message), or "P", the
 *            tail, "-" and the IMAP part number with "." as "_" (one
 *            part: "P...-1_2"), or "U" and 64 hex digits (an upload: the
 *            SHA-256 of its bytes).
 */

typedef struct {
    u_char                              mailbox[16];  /* hex digits */
    uint64_t                            uidvalidity;
    uint64_t                            uid;
    ngx_str_t                           part;         /* "1.2": a "P"
                                                         blob's, in the
                                                         id's pool */
} ngx_http_mail_plus_jmap_ref_t;

/* a mailbox's id from its whole name in UTF-8, into 17 bytes of id */
void ngx_http_mail_plus_jmap_mailbox_id(ngx_str_t *name, u_char *id);

/* an email, thread or blob id ('E', 'T', 'B', 'P') of a reference */
ngx_int_t ngx_http_mail_plus_jmap_ref_id(ngx_pool_t *pool, u_char kind,
    ngx_http_mail_plus_jmap_ref_t *ref, ngx_str_t *id);

/* an id to its reference: its kind ('E', 'T', 'B', 'P'), or 0 for a
   string that is none of ours (a client's id: answer "notFound") */
u_char ngx_http_mail_plus_jmap_ref(ngx_pool_t *pool, ngx_str_t *id,
    ngx_http_mail_plus_jmap_ref_t *ref);


/*
 * The Email state (ngx_http_mail_plus_jmap_ids.c): "S" and the base64url
 * of 24 bytes a selectable mailbox, in the list's order: the first 8
 * bytes of its id (binary), its UIDVALIDITY and UIDNEXT (4 bytes each)
 * and its HIGHESTMODSEQ (8 bytes), all big-endian: what Email/changes
 * needs to ask each mailbox what changed since.
 */

typedef struct {
    u_char                              mailbox[16];  /* hex digits */
    uint32_t                            uidvalidity;
    uint32_t                            uidnext;
    uint64_t                            highestmodseq;
} ngx_http_mail_plus_jmap_since_t;

ngx_int_t ngx_http_mail_plus_jmap_email_state(ngx_pool_t *pool,
    ngx_array_t *mailboxes, ngx_str_t *state);

/* a client's state string read back: NGX_OK and an array of
   ngx_http_mail_plus_jmap_since_t, NGX_DECLINED (not a state of ours:
   "cannotCalculateChanges"), NGX_ERROR */
ngx_int_t ngx_http_mail_plus_jmap_email_since(ngx_pool_t *pool,
    ngx_str_t *state, ngx_array_t **since);


/* a mailbox as the methods see it (ngx_http_mail_plus_jmap_mailbox.c) */

typedef struct {
    u_char                              id[17];       /* "M..." */
    ngx_str_t                           path;         /* the whole name,
                                                         UTF-8: for
                                                         ngx_mail_plus_imap_
                                                         cmd_mailbox() */
    ngx_str_t                           name;         /* its last level */
    ngx_int_t                           parent;       /* an index, or -1 */
    const char                         *role;         /* "inbox"... or
                                                         NULL */
    u_char                              delimiter;    /* 0: flat */
    uint64_t                            total;        /* MESSAGES */
    uint64_t                            unread;       /* UNSEEN */
    uint64_t                            uidvalidity;
    uint64_t                            uidnext;
    uint64_t                            highestmodseq;  /* 0: none */
    unsigned                            noselect:1;
    unsigned                            subscribed:1;
} ngx_http_mail_plus_jmap_mailbox_t;

typedef void (*ngx_http_mail_plus_jmap_mailboxes_pt)(
    ngx_http_mail_plus_jmap_call_t *call);

/*
 * the user's mailboxes with their counts in ctx->mailboxes (LIST with
 * SPECIAL-USE, STATUS), asked once a request: NGX_OK, they are known
 * (the handler is not called); NGX_AGAIN, the handler is called from an
 * event, with ctx->mailboxes set, or NULL and call->error set;
 * NGX_ERROR.  A change (Mailbox/set, a move) sets ctx->mailboxes to NULL.
 */

ngx_int_t ngx_http_mail_plus_jmap_mailboxes(
    ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_mailboxes_pt handler);
ngx_http_mail_plus_jmap_mailbox_t *ngx_http_mail_plus_jmap_mailbox_find(
    ngx_array_t *mailboxes, u_char *id);
ngx_http_mail_plus_jmap_mailbox_t *ngx_http_mail_plus_jmap_mailbox_role(
    ngx_array_t *mailboxes, const char *role);

/*
 * a mailbox as a list found it, for what is kept with the IMAP session
 * from one request to the next (a SORT, a page read ahead): with
 * CONDSTORE a new, changed or expunged message raises HIGHESTMODSEQ, so
 * the same id, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and count found again
 * prove nothing changed in between; _same() is false without CONDSTORE
 */

typedef struct {
    u_char                              id[17];
    uint64_t                            uidvalidity;
    uint64_t                            uidnext;
    uint64_t                            highestmodseq;
    uint64_t                            total;
} ngx_http_mail_plus_jmap_mbstate_t;

void ngx_http_mail_plus_jmap_mbstate_set(ngx_http_mail_plus_jmap_mbstate_t *st,
    ngx_http_mail_plus_jmap_mailbox_t *mb);
ngx_uint_t ngx_http_mail_plus_jmap_mbstate_same(
    ngx_http_mail_plus_jmap_mbstate_t *st,
    ngx_http_mail_plus_jmap_mailbox_t *mb);

/* the Mailbox state: "S" and 16 hex digits of the MD5 of each mailbox's
   id, name, parent, role, subscription, counts and HIGHESTMODSEQ, in the
   list's order, into 18 bytes (NUL-terminated) */
void ngx_http_mail_plus_jmap_mailbox_state(ngx_array_t *list, u_char *state);


/*
 * Email/set's "create" (ngx_http_mail_plus_jmap_compose.c): each object
 * of "create" made a message (RFC 5322, MIME) and APPENDed to its
 * mailbox; "created" and "notCreated" (objects of the answer) filled, the
 * creation ids recorded.  NGX_OK: done (next is not called); NGX_AGAIN:
 * next is called from an event once all are done; NGX_ERROR.
 */

typedef void (*ngx_http_mail_plus_jmap_next_pt)(
    ngx_http_mail_plus_jmap_call_t *call);

ngx_int_t ngx_http_mail_plus_jmap_email_create(
    ngx_http_mail_plus_jmap_call_t *call, json_t *create, json_t *created,
    json_t *not_created, ngx_http_mail_plus_jmap_next_pt next);

/* Email/import (RFC 8621 4.8), a method of the submission part's table */
ngx_int_t ngx_http_mail_plus_jmap_email_import(
    ngx_http_mail_plus_jmap_call_t *call);


/* the session resource (ngx_http_mail_plus_jmap_session.c) */

ngx_int_t ngx_http_mail_plus_jmap_session(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx);
ngx_int_t ngx_http_mail_plus_jmap_state(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *state);

/*
 * a JSON answer written in parts (ngx_http_mail_plus_jmap_json.c): values
 * dumped by jansson, the punctuation between them, another writer's text
 * taken whole; then sent; or a whole answer of one value
 */

void ngx_http_mail_plus_jmap_text_init(ngx_http_mail_plus_jmap_text_t *text,
    ngx_pool_t *pool);
ngx_int_t ngx_http_mail_plus_jmap_text_json(
    ngx_http_mail_plus_jmap_text_t *text, json_t *json, ngx_uint_t skip_open);
ngx_int_t ngx_http_mail_plus_jmap_text_raw(
    ngx_http_mail_plus_jmap_text_t *text, const char *s, size_t len);
ngx_int_t ngx_http_mail_plus_jmap_text_piece(
    ngx_http_mail_plus_jmap_text_t *text, json_t *json, ngx_str_t *piece);
ngx_int_t ngx_http_mail_plus_jmap_text_string(
    ngx_http_mail_plus_jmap_text_t *text, u_char *s, size_t len);
void ngx_http_mail_plus_jmap_text_append(ngx_http_mail_plus_jmap_text_t *text,
    ngx_http_mail_plus_jmap_text_t *more);
ngx_int_t ngx_http_mail_plus_jmap_text_send(ngx_http_request_t *r,
    ngx_uint_t status, char *type, ngx_http_mail_plus_jmap_text_t *text);
ngx_int_t ngx_http_mail_plus_jmap_send_json(ngx_http_request_t *r,
    ngx_uint_t status, char *type, json_t *json);

/* answers (ngx_http_mail_plus_jmap_module.c) */

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
    ngx_uint_t                          max_query_limit;  /* Email/query */
    ngx_uint_t                          max_objects_in_set;
    size_t                              max_size_upload;
    ngx_uint_t                          max_concurrent;
    ngx_str_t                           prefix;       /* the location's */
    ngx_path_t                         *upload_path;  /* the store of
                                                         uploads */
    time_t                              upload_expire;
    off_t                               upload_quota; /* an account's */
    size_t                              read_ahead;   /* a page's bytes, 0:
                                                         none */
    ngx_mail_plus_imap_conf_t           imap;         /* "mail_plus_jmap_
                                                         imap_*" */
} ngx_http_mail_plus_jmap_loc_conf_t;


extern ngx_module_t  ngx_http_mail_plus_jmap_module;


#endif /* _NGX_HTTP_MAIL_PLUS_JMAP_H_INCLUDED_ */
