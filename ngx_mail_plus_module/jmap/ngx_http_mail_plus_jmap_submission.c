
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"
#include "ngx_http_mail_plus_jmap.h"
#include "ngx_http_mail_plus_jmap_message.h"


/*
 * Identity/get, Identity/changes and EmailSubmission/set (RFC 8621,
 * sections 6 and 7): messages into the module's queue.
 *
 * The account has one identity: "I" and the account id's hex, its email
 * the login when the login is an address, else the login "@" the
 * server's first server_name.  A submission's message is fetched from
 * the backend (EXAMINE, UID FETCH BODY.PEEK[]); its From must be that
 * address alone ("forbiddenFrom"); the envelope is the identity's
 * address and the To, Cc and Bcc addresses, or the one given (its
 * MAIL FROM the identity's address, each address checked); the Bcc field
 * is removed from the copy queued.  The copy goes into the queue through
 * the writer HTTP submission uses (ngx_mail_plus_submission_write()),
 * and "created" is answered only once the queue has fsynced it.  Then
 * onSuccessUpdateEmail and onSuccessDestroyEmail are done (SELECT,
 * UID STORE, UID MOVE, UID EXPUNGE) and answered as the implicit Email/set
 * response.  Submissions are submitted at once and final: no
 * EmailSubmission/get, no sendAt, no undo.
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_MAX_RCPTS  100


typedef struct {
    ngx_http_mail_plus_jmap_call_t     *call;
    ngx_pool_t                         *pool;
    ngx_str_t                           identity;     /* "I..." */
    ngx_str_t                           email;        /* its address */

    json_t                             *created;
    json_t                             *not_created;
    const char                        **keys;         /* of "create" */
    ngx_uint_t                          nkeys;
    ngx_uint_t                          next;         /* the one running */

    /* the one running */
    const char                         *key;
    ngx_http_mail_plus_jmap_ref_t       ref;
    ngx_str_t                           email_id;
    ngx_str_t                           message;
    unsigned                            found:1;
    ngx_mail_plus_submission_t          spool;

    /* the Email/set of onSuccess... */
    json_t                             *updated;
    json_t                             *not_updated;
    json_t                             *destroyed;
    ngx_uint_t                          pending;
} ngx_http_mail_plus_jmap_sub_t;


static ngx_int_t ngx_http_mail_plus_jmap_identity_get(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_identity_changes(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_identity(
    ngx_http_mail_plus_jmap_call_t *call, ngx_str_t *id, ngx_str_t *email);
static ngx_int_t ngx_http_mail_plus_jmap_submission_set(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_sub_mailboxes(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_sub_next(
    ngx_http_mail_plus_jmap_sub_t *s);
static ngx_int_t ngx_http_mail_plus_jmap_sub_fetch(
    ngx_http_mail_plus_jmap_sub_t *s, json_t *obj);
static void ngx_http_mail_plus_jmap_sub_examined(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_sub_data(
    ngx_mail_plus_imap_cmd_t *cmd, ngx_mail_plus_imap_response_t *resp);
static void ngx_http_mail_plus_jmap_sub_fetched(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_sub_queue(
    ngx_http_mail_plus_jmap_sub_t *s, json_t *obj);
static ngx_int_t ngx_http_mail_plus_jmap_sub_envelope(
    ngx_http_mail_plus_jmap_sub_t *s, json_t *obj, ngx_str_t *header,
    ngx_array_t *rcpts);
static void ngx_http_mail_plus_jmap_sub_committed(
    ngx_mail_plus_queue_msg_t *m);
static ngx_int_t ngx_http_mail_plus_jmap_sub_refuse(
    ngx_http_mail_plus_jmap_sub_t *s, const char *type,
    const char *description);
static void ngx_http_mail_plus_jmap_sub_after(
    ngx_http_mail_plus_jmap_sub_t *s);
static ngx_int_t ngx_http_mail_plus_jmap_sub_update(
    ngx_http_mail_plus_jmap_sub_t *s, const char *key, json_t *patch,
    ngx_uint_t destroy);
static ngx_int_t ngx_http_mail_plus_jmap_sub_patch(
    ngx_http_mail_plus_jmap_sub_t *s, json_t *patch, u_char *mid,
    ngx_str_t *plus, ngx_str_t *minus,
    ngx_http_mail_plus_jmap_mailbox_t **to);
static ngx_int_t ngx_http_mail_plus_jmap_sub_command(
    ngx_http_mail_plus_jmap_sub_t *s, ngx_mail_plus_imap_t *imap,
    ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_sub_updated(
    ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_sub_state(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_sub_cleanup(void *data);
static ngx_int_t ngx_http_mail_plus_jmap_header_end(ngx_str_t *message,
    ngx_str_t *header);
static ngx_int_t ngx_http_mail_plus_jmap_field(ngx_pool_t *pool,
    ngx_str_t *header, const char *name, ngx_array_t *addrs);
static ngx_int_t ngx_http_mail_plus_jmap_address_list(ngx_pool_t *pool,
    u_char *p, u_char *last, ngx_array_t *addrs);
static ngx_int_t ngx_http_mail_plus_jmap_without_bcc(ngx_pool_t *pool,
    ngx_str_t *message, ngx_str_t *header, ngx_str_t *copy);


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_submission[] = {
    { "Identity/get", NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION,
      ngx_http_mail_plus_jmap_identity_get },
    { "Identity/changes", NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION,
      ngx_http_mail_plus_jmap_identity_changes },
    { "EmailSubmission/set", NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION,
      ngx_http_mail_plus_jmap_submission_set },
    { "Email/import", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_email_import },
    { NULL, 0, NULL }
};


/* the identities never change: one state */

static ngx_str_t  ngx_http_mail_plus_jmap_identity_state = ngx_string("1");


static ngx_int_t
ngx_http_mail_plus_jmap_identity_get(ngx_http_mail_plus_jmap_call_t *call)
{
    json_t     *ids, *v, *list, *not_found;
    size_t      i;
    ngx_str_t   id, email;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    if (ngx_http_mail_plus_jmap_identity(call, &id, &email) != NGX_OK) {
        return NGX_ERROR;
    }

    ids = json_object_get(call->args, "ids");

    if (ids && !json_is_null(ids) && !json_is_array(ids)) {
        call->error = "invalidArguments";
        return NGX_OK;
    }

    call->result = json_pack("{s:s%, s:s%, s:[], s:[]}",
                             "accountId",
                             (char *) call->ctx->account_id.data,
                             call->ctx->account_id.len,
                             "state",
                             (char *) ngx_http_mail_plus_jmap_identity_state
                                 .data,
                             ngx_http_mail_plus_jmap_identity_state.len,
                             "list", "notFound");
    if (call->result == NULL) {
        return NGX_ERROR;
    }

    list = json_object_get(call->result, "list");
    not_found = json_object_get(call->result, "notFound");

    v = json_pack("{s:s%, s:s, s:s%, s:n, s:n, s:s, s:s, s:b}",
                  "id", (char *) id.data, id.len, "name", "",
                  "email", (char *) email.data, email.len,
                  "replyTo", "bcc", "textSignature", "",
                  "htmlSignature", "", "mayDelete", 0);

    if (v == NULL) {
        return NGX_ERROR;
    }

    if (ids == NULL || json_is_null(ids)) {
        return json_array_append_new(list, v) == 0 ? NGX_OK : NGX_ERROR;
    }

    json_array_foreach(ids, i, v) {
        if (json_is_string(v) && json_string_length(v) == id.len
            && ngx_strncmp(json_string_value(v), id.data, id.len) == 0)
        {
            if (json_array_size(list) == 0
                && json_array_append(list, v) != 0)
            {
                return NGX_ERROR;
            }

        } else if (json_array_append(not_found, v) != 0) {
            return NGX_ERROR;
        }
    }

    /* the identity itself, in place of its id */

    if (json_array_size(list)) {
        v = json_pack("{s:s%, s:s, s:s%, s:n, s:n, s:s, s:s, s:b}",
                      "id", (char *) id.data, id.len, "name", "",
                      "email", (char *) email.data, email.len,
                      "replyTo", "bcc", "textSignature", "",
                      "htmlSignature", "", "mayDelete", 0);

        if (v == NULL || json_array_set_new(list, 0, v) != 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_identity_changes(ngx_http_mail_plus_jmap_call_t *call)
{
    json_t  *since;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    since = json_object_get(call->args, "sinceState");

    if (!json_is_string(since)
        || ngx_strcmp(json_string_value(since), "1") != 0)
    {
        call->error = "cannotCalculateChanges";
        return NGX_OK;
    }

    call->result = json_pack("{s:s%, s:s, s:s, s:b, s:[], s:[], s:[]}",
                             "accountId",
                             (char *) call->ctx->account_id.data,
                             call->ctx->account_id.len,
                             "oldState", "1", "newState", "1",
                             "hasMoreChanges", 0, "created", "updated",
                             "destroyed");

    return call->result ? NGX_OK : NGX_ERROR;
}


/*
 * the identity: "I" and the account's hex; the login if it is an
 * address, else the login "@" the first server_name (or the host name)
 */

static ngx_int_t
ngx_http_mail_plus_jmap_identity(ngx_http_mail_plus_jmap_call_t *call,
    ngx_str_t *id, ngx_str_t *email)
{
    ngx_str_t                  *login, host;
    ngx_pool_t                 *pool;
    ngx_http_core_srv_conf_t   *cscf;

    pool = call->request->pool;
    login = &call->ctx->username;

    id->len = call->ctx->account_id.len;
    id->data = ngx_pnalloc(pool, id->len);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(id->data, call->ctx->account_id.data, id->len);
    id->data[0] = 'I';

    if (ngx_http_mail_plus_jmap_addr_spec(login) == NGX_OK) {
        *email = *login;
        return NGX_OK;
    }

    cscf = ngx_http_get_module_srv_conf(call->request, ngx_http_core_module);

    host = cscf->server_name.len ? cscf->server_name : ngx_cycle->hostname;

    email->len = login->len + 1 + host.len;
    email->data = ngx_pnalloc(pool, email->len);
    if (email->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(email->data, "%V@%V", login, &host);

    /* a login that makes no address: the identity has an empty one */

    if (ngx_http_mail_plus_jmap_addr_spec(email) != NGX_OK) {
        email->len = 0;
    }

    return NGX_OK;
}


/* EmailSubmission/set: "create" only, one submission after another */

static ngx_int_t
ngx_http_mail_plus_jmap_submission_set(ngx_http_mail_plus_jmap_call_t *call)
{
    json_t                         *create, *v;
    ngx_int_t                       rc;
    ngx_uint_t                      n;
    const char                     *key;
    ngx_pool_cleanup_t             *cln;
    ngx_http_mail_plus_jmap_sub_t  *s;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    create = json_object_get(call->args, "create");

    if ((create && !json_is_null(create) && !json_is_object(create))
        || json_object_get(call->args, "update")
        || json_object_get(call->args, "destroy"))
    {
        call->error = "invalidArguments";
        call->description = "only \"create\" is supported: submissions are "
                            "final";
        return NGX_OK;
    }

    if (ngx_http_mail_plus_jmap_creation_ids(call, create) != NGX_OK) {
        return NGX_OK;
    }

    call->result = json_pack("{s:O, s:n, s:s, s:{}, s:{}}",
                             "accountId",
                             json_object_get(call->args, "accountId"),
                             "oldState", "newState", "1",
                             "created", "notCreated");
    if (call->result == NULL) {
        return NGX_ERROR;
    }

    s = ngx_pcalloc(call->request->pool,
                    sizeof(ngx_http_mail_plus_jmap_sub_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->call = call;
    s->pool = call->request->pool;
    s->created = json_object_get(call->result, "created");
    s->not_created = json_object_get(call->result, "notCreated");
    s->nkeys = json_object_size(create);

    if (ngx_http_mail_plus_jmap_identity(call, &s->identity, &s->email)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->keys = ngx_palloc(s->pool, (s->nkeys + 1) * sizeof(char *));
    if (s->keys == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    json_object_foreach(create, key, v) {
        s->keys[n++] = key;
    }

    cln = ngx_pool_cleanup_add(s->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_mail_plus_jmap_sub_cleanup;
    cln->data = s;

    call->data = s;

    if (s->nkeys == 0) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap submission: %ui to submit", s->nkeys);

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                       ngx_http_mail_plus_jmap_sub_mailboxes);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* with the mailboxes known, the first step runs from an event too */

    return rc == NGX_OK ? ngx_http_mail_plus_jmap_sub_fetch(s, NULL)
                        : NGX_AGAIN;
}


static void
ngx_http_mail_plus_jmap_sub_mailboxes(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_http_mail_plus_jmap_sub_t  *s;

    s = call->data;

    if (call->ctx->mailboxes == NULL) {
        ngx_http_mail_plus_jmap_done(call);
        return;
    }

    ngx_http_mail_plus_jmap_sub_next(s);
}


/* the next submission, or onSuccess... once all are done (events only) */

static void
ngx_http_mail_plus_jmap_sub_next(ngx_http_mail_plus_jmap_sub_t *s)
{
    json_t     *obj;
    ngx_int_t   rc;

    for ( ;; ) {

        if (s->next == s->nkeys) {
            ngx_http_mail_plus_jmap_sub_after(s);
            return;
        }

        s->key = s->keys[s->next];
        obj = json_object_get(json_object_get(s->call->args, "create"),
                              s->key);

        rc = ngx_http_mail_plus_jmap_sub_fetch(s, obj);

        if (rc == NGX_AGAIN) {
            return;
        }

        if (rc != NGX_OK) {
            s->call->error = "serverFail";
            ngx_http_mail_plus_jmap_done(s->call);
            return;
        }

        /* refused at once */

        s->next++;
    }
}


/*
 * a submission checked and its message asked for: NGX_AGAIN; NGX_OK:
 * refused; with no object, the first one is started from an event
 */

static ngx_int_t
ngx_http_mail_plus_jmap_sub_fetch(ngx_http_mail_plus_jmap_sub_t *s,
    json_t *obj)
{
    u_char                              mid[17];
    json_t                             *v;
    const char                         *id;
    ngx_mail_plus_imap_t               *imap;
    ngx_mail_plus_imap_cmd_t           *cmd;
    ngx_http_mail_plus_jmap_ctx_t      *ctx;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    ctx = s->call->ctx;

    imap = ngx_http_mail_plus_jmap_imap(ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    if (obj == NULL) {

        /* a NOOP whose answer starts the first submission */

        cmd = ngx_mail_plus_imap_cmd(imap, s->pool);
        if (cmd == NULL || ngx_mail_plus_imap_cmd_text(cmd, "NOOP") != NGX_OK)
        {
            return NGX_ERROR;
        }

        cmd->handler = ngx_http_mail_plus_jmap_sub_examined;
        cmd->data = s;
        s->key = NULL;

        return ngx_mail_plus_imap_send(cmd) == NGX_OK ? NGX_AGAIN
                                                       : NGX_ERROR;
    }

    v = json_object_get(obj, "identityId");

    if (!json_is_object(obj) || !json_is_string(v)
        || json_string_length(v) != s->identity.len
        || ngx_strncmp(json_string_value(v), s->identity.data,
                       s->identity.len) != 0)
    {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "invalidProperties",
                                                  "no such identity");
    }

    if (s->email.len == 0) {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "forbiddenFrom",
                                                  "the login makes no "
                                                  "address");
    }

    v = json_object_get(obj, "emailId");
    id = json_is_string(v) ? ngx_http_mail_plus_jmap_id(ctx,
                                                        json_string_value(v))
                           : NULL;

    if (id == NULL) {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "invalidProperties",
                                                  "no such email");
    }

    s->email_id.len = ngx_strlen(id);
    s->email_id.data = ngx_pnalloc(s->pool, s->email_id.len);
    if (s->email_id.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->email_id.data, id, s->email_id.len);

    if (ngx_http_mail_plus_jmap_ref(s->pool, &s->email_id, &s->ref) != 'E')
    {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "invalidProperties",
                                                  "no such email");
    }

    mid[0] = 'M';
    ngx_memcpy(mid + 1, s->ref.mailbox, 16);

    mb = ngx_http_mail_plus_jmap_mailbox_find(ctx->mailboxes, mid);

    if (mb == NULL || mb->noselect || mb->uidvalidity != s->ref.uidvalidity)
    {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "invalidProperties",
                                                  "no such email");
    }

    cmd = ngx_mail_plus_imap_cmd(imap, s->pool);

    if (cmd == NULL
        || ngx_mail_plus_imap_cmd_text(cmd, "EXAMINE ") != NGX_OK
        || ngx_mail_plus_imap_cmd_mailbox(cmd, &mb->path) != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmd->handler = ngx_http_mail_plus_jmap_sub_examined;
    cmd->data = s;

    s->found = 0;
    ngx_str_null(&s->message);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->call->request->connection->log, 0,
                   "http jmap submission: \"%s\": EXAMINE for %V", s->key,
                   &s->email_id);

    return ngx_mail_plus_imap_send(cmd) == NGX_OK ? NGX_AGAIN : NGX_ERROR;
}


static void
ngx_http_mail_plus_jmap_sub_examined(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_mail_plus_imap_cmd_t       *fetch;
    ngx_http_mail_plus_jmap_sub_t  *s;

    s = cmd->data;

    if (s->key == NULL) {
        ngx_http_mail_plus_jmap_sub_next(s);
        return;
    }

    if (cmd->rc != NGX_OK || cmd->status != NGX_MAIL_PLUS_IMAP_OK
        || cmd->imap->uidvalidity != s->ref.uidvalidity)
    {
        (void) ngx_http_mail_plus_jmap_sub_refuse(s, "invalidProperties",
                                                  "no such email");
        s->next++;
        ngx_http_mail_plus_jmap_sub_next(s);
        return;
    }

    fetch = ngx_mail_plus_imap_cmd(cmd->imap, s->pool);

    if (fetch == NULL
        || ngx_mail_plus_imap_cmd_text(fetch, "UID FETCH %uL (BODY.PEEK[])",
                                       s->ref.uid)
           != NGX_OK)
    {
        s->call->error = "serverFail";
        ngx_http_mail_plus_jmap_done(s->call);
        return;
    }

    fetch->handler = ngx_http_mail_plus_jmap_sub_fetched;
    fetch->untagged_handler = ngx_http_mail_plus_jmap_sub_data;
    fetch->data = s;

    if (ngx_mail_plus_imap_send(fetch) != NGX_OK) {
        s->call->error = "serverFail";
        ngx_http_mail_plus_jmap_done(s->call);
    }
}


/* "* n FETCH (UID u BODY[] {len} ...)" */

static ngx_int_t
ngx_http_mail_plus_jmap_sub_data(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_mail_plus_imap_response_t *resp)
{
    ngx_http_mail_plus_jmap_sub_t  *s;

    s = cmd->data;

    if (resp->name.len != 5
        || ngx_strncasecmp(resp->name.data, (u_char *) "FETCH", 5) != 0)
    {
        return NGX_DECLINED;
    }

    if (ngx_mail_plus_imap_fetch_body(resp, s->ref.uid, &s->message)
        == NGX_OK)
    {
        s->found = 1;
    }

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_sub_fetched(ngx_mail_plus_imap_cmd_t *cmd)
{
    json_t                         *obj;
    ngx_int_t                       rc;
    ngx_http_mail_plus_jmap_sub_t  *s;

    s = cmd->data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->call->request->connection->log, 0,
                   "http jmap submission: \"%s\": FETCH answered, rc %i, "
                   "%uz bytes", s->key, cmd->rc, s->message.len);

    if (cmd->rc != NGX_OK || cmd->status != NGX_MAIL_PLUS_IMAP_OK
        || !s->found || s->message.len == 0)
    {
        (void) ngx_http_mail_plus_jmap_sub_refuse(s, "invalidProperties",
                                                  "no such email");
        s->next++;
        ngx_http_mail_plus_jmap_sub_next(s);
        return;
    }

    obj = json_object_get(json_object_get(s->call->args, "create"), s->key);

    rc = ngx_http_mail_plus_jmap_sub_queue(s, obj);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        s->call->error = "serverFail";
        ngx_http_mail_plus_jmap_done(s->call);
        return;
    }

    s->next++;
    ngx_http_mail_plus_jmap_sub_next(s);
}


/* the message checked and written into the queue: NGX_AGAIN, the commit
   runs; NGX_OK, refused */

static ngx_int_t
ngx_http_mail_plus_jmap_sub_queue(ngx_http_mail_plus_jmap_sub_t *s,
    json_t *obj)
{
    ngx_int_t                   rc;
    ngx_str_t                   header, copy, *from;
    ngx_array_t                *addrs, *rcpts;
    ngx_connection_t           *c;
    ngx_mail_plus_queue_t      *q;
    ngx_http_request_t         *r;
    ngx_http_core_srv_conf_t   *cscf;
    ngx_mail_plus_received_t    rv;
    ngx_mail_plus_queue_envelope_t  env;

    r = s->call->request;
    c = r->connection;

    if (ngx_strlchr(s->message.data, s->message.data + s->message.len, '\0')
        || ngx_http_mail_plus_jmap_header_end(&s->message, &header) != NGX_OK)
    {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "invalidEmail",
                                                  "not a message");
    }

    addrs = ngx_array_create(s->pool, 2, sizeof(ngx_str_t));
    rcpts = ngx_array_create(s->pool, 4, sizeof(ngx_str_t));
    if (addrs == NULL || rcpts == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_field(s->pool, &header, "From", addrs);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    from = addrs->elts;

    if (rc != NGX_OK || addrs->nelts != 1 || from->len != s->email.len
        || ngx_strncasecmp(from->data, s->email.data, s->email.len) != 0)
    {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "forbiddenFrom",
                                                  "the From is not the "
                                                  "identity's address");
    }

    rc = ngx_http_mail_plus_jmap_sub_envelope(s, obj, &header, rcpts);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : rc;
    }

    if (ngx_http_mail_plus_jmap_without_bcc(s->pool, &s->message, &header,
                                            &copy)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    q = ngx_mail_plus_queue_get((ngx_cycle_t *) ngx_cycle);
    if (q == NULL) {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "serverFail",
                                                  "no queue is configured");
    }

    ngx_memzero(&env, sizeof(ngx_mail_plus_queue_envelope_t));

    env.sender = s->email;
    env.recipients = rcpts;
    env.client = c->addr_text;
    env.login = s->call->ctx->username;
    env.body = NGX_MAIL_PLUS_BODY_7BIT;

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    ngx_str_null(&rv.helo);
    rv.addr = c->addr_text;
    rv.ipv6 = (c->sockaddr->sa_family == AF_INET6);
    rv.server_name = cscf->server_name.len ? cscf->server_name
                                           : ngx_cycle->hostname;
    rv.with = c->ssl ? "HTTPSA" : "HTTPA";
    rv.rcpt = (rcpts->nelts == 1) ? rcpts->elts : NULL;

    ngx_memzero(&s->spool, sizeof(ngx_mail_plus_submission_t));
    s->spool.max_size = NGX_MAX_OFF_T_VALUE;
    s->spool.server_name = rv.server_name;

    rc = ngx_mail_plus_submission_open(&s->spool, q, &env, &rv, s->pool,
                                       c->log);

    if (rc == NGX_DECLINED) {
        return ngx_http_mail_plus_jmap_sub_refuse(s, "serverFail",
                                                  "the queue is not "
                                                  "available");
    }

    if (rc != NGX_OK
        || ngx_mail_plus_submission_write(&s->spool, copy.data,
                                          copy.data + copy.len)
           != NGX_OK
        || ngx_mail_plus_submission_end(&s->spool) != NGX_OK)
    {
        if (s->spool.msg) {
            ngx_mail_plus_queue_abort(s->spool.msg);
            s->spool.msg = NULL;
        }

        return ngx_http_mail_plus_jmap_sub_refuse(s, "serverFail",
                                                  "the queue is not "
                                                  "available");
    }

    s->spool.msg->handler = ngx_http_mail_plus_jmap_sub_committed;
    s->spool.msg->data = s;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http jmap submission: \"%s\": message %s, %ui "
                   "recipients, commit posted", s->key, s->spool.msg->id,
                   rcpts->nelts);

    (void) ngx_mail_plus_queue_commit(s->spool.msg);

    return NGX_AGAIN;
}


/*
 * the envelope given (mailFrom the identity's address, each rcptTo an
 * address), or the identity's and the To, Cc and Bcc addresses;
 * NGX_DECLINED: refused
 */

static ngx_int_t
ngx_http_mail_plus_jmap_sub_envelope(ngx_http_mail_plus_jmap_sub_t *s,
    json_t *obj, ngx_str_t *header, ngx_array_t *rcpts)
{
    json_t      *envelope, *from, *to, *v;
    size_t       i;
    ngx_str_t    addr, *a, *b;
    ngx_uint_t   k, n, j;

    static const char  *fields[] = { "To", "Cc", "Bcc", NULL };

    envelope = json_object_get(obj, "envelope");

    if (envelope && !json_is_null(envelope)) {
        from = json_object_get(json_object_get(envelope, "mailFrom"),
                               "email");
        to = json_object_get(envelope, "rcptTo");

        if (!json_is_string(from) || !json_is_array(to)) {
            (void) ngx_http_mail_plus_jmap_sub_refuse(s, "invalidProperties",
                                                      "an invalid envelope");
            return NGX_DECLINED;
        }

        if (json_string_length(from) != s->email.len
            || ngx_strncasecmp((u_char *) json_string_value(from),
                               s->email.data, s->email.len) != 0)
        {
            (void) ngx_http_mail_plus_jmap_sub_refuse(s, "forbiddenMailFrom",
                                                      "the envelope's "
                                                      "mailFrom is not the "
                                                      "identity's address");
            return NGX_DECLINED;
        }

        json_array_foreach(to, i, v) {
            v = json_object_get(v, "email");

            if (!json_is_string(v)) {
                (void) ngx_http_mail_plus_jmap_sub_refuse(s,
                                                      "invalidProperties",
                                                      "an invalid envelope");
                return NGX_DECLINED;
            }

            a = ngx_array_push(rcpts);
            if (a == NULL) {
                return NGX_ERROR;
            }

            a->data = (u_char *) json_string_value(v);
            a->len = json_string_length(v);
        }

    } else {
        for (k = 0; fields[k]; k++) {
            if (ngx_http_mail_plus_jmap_field(s->pool, header, fields[k],
                                              rcpts)
                == NGX_ERROR)
            {
                return NGX_ERROR;
            }
        }
    }

    /* each checked, the repeated ones dropped */

    a = rcpts->elts;
    n = 0;

    for (k = 0; k < rcpts->nelts; k++) {
        addr = a[k];

        if (ngx_http_mail_plus_jmap_addr_spec(&addr) != NGX_OK) {
            (void) ngx_http_mail_plus_jmap_sub_refuse(s, "invalidRecipients",
                                                      "an invalid recipient "
                                                      "address");
            return NGX_DECLINED;
        }

        for (j = 0, b = a; j < n; j++) {
            if (b[j].len == addr.len
                && ngx_strncasecmp(b[j].data, addr.data, addr.len) == 0)
            {
                break;
            }
        }

        if (j == n) {
            a[n++] = addr;
        }
    }

    rcpts->nelts = n;

    if (n == 0) {
        (void) ngx_http_mail_plus_jmap_sub_refuse(s, "noRecipients",
                                                  "no recipient");
        return NGX_DECLINED;
    }

    if (n > NGX_HTTP_MAIL_PLUS_JMAP_MAX_RCPTS) {
        (void) ngx_http_mail_plus_jmap_sub_refuse(s, "tooManyRecipients",
                                                  "too many recipients");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the queue has fsynced the message (or failed): then "created" */

static void
ngx_http_mail_plus_jmap_sub_committed(ngx_mail_plus_queue_msg_t *m)
{
    u_char                          id[1 + NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    json_t                         *obj;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_mail_plus_jmap_sub_t  *s;

    s = m->data;
    r = s->call->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    s->spool.msg = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http jmap submission: commit of %s done, error %d",
                   m->id, m->err);

    if (m->err) {
        (void) ngx_http_mail_plus_jmap_sub_refuse(s, "serverFail",
                                                  "the queue is not "
                                                  "available");

    } else {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "queued %s: from=<%V>, size=%O, client=%V, via jmap",
                      m->id, &s->email, s->spool.data.size, &c->addr_text);

        ngx_sprintf(id, "S%s%Z", m->id);

        obj = json_pack("{s:s, s:s, s:s%}", "id", (char *) id,
                        "undoStatus", "final",
                        "emailId", (char *) s->email_id.data,
                        s->email_id.len);

        if (obj == NULL
            || json_object_set_new(s->created, s->key, obj) != 0
            || ngx_http_mail_plus_jmap_created(s->call->ctx, s->key,
                                               (char *) id)
               != NGX_OK)
        {
            s->call->error = "serverFail";
            ngx_http_mail_plus_jmap_done(s->call);
            ngx_http_run_posted_requests(c);
            return;
        }
    }

    s->next++;
    ngx_http_mail_plus_jmap_sub_next(s);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_mail_plus_jmap_sub_refuse(ngx_http_mail_plus_jmap_sub_t *s,
    const char *type, const char *description)
{
    json_t  *err;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->call->request->connection->log, 0,
                   "http jmap submission: \"%s\" refused: %s",
                   s->key ? s->key : "", type);

    err = json_pack("{s:s, s:s}", "type", type, "description", description);

    if (err == NULL || json_object_set_new(s->not_created, s->key, err) != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* onSuccessUpdateEmail, onSuccessDestroyEmail: the implicit Email/set */

static void
ngx_http_mail_plus_jmap_sub_after(ngx_http_mail_plus_jmap_sub_t *s)
{
    json_t                          *update, *destroy, *patch;
    size_t                           i;
    ngx_int_t                        rc;
    const char                      *key;
    ngx_http_mail_plus_jmap_call_t  *call;

    call = s->call;

    update = json_object_get(call->args, "onSuccessUpdateEmail");
    destroy = json_object_get(call->args, "onSuccessDestroyEmail");

    if ((update == NULL || json_is_null(update))
        && (destroy == NULL || json_is_null(destroy)))
    {
        ngx_http_mail_plus_jmap_done(call);
        return;
    }

    call->implicit_name = "Email/set";
    call->implicit = json_pack("{s:O, s:n, s:{}, s:{}, s:[], s:{}}",
                               "accountId",
                               json_object_get(call->args, "accountId"),
                               "oldState", "updated", "notUpdated",
                               "destroyed", "notDestroyed");
    if (call->implicit == NULL) {
        call->error = "serverFail";
        ngx_http_mail_plus_jmap_done(call);
        return;
    }

    s->updated = json_object_get(call->implicit, "updated");
    s->not_updated = json_object_get(call->implicit, "notUpdated");
    s->destroyed = json_object_get(call->implicit, "destroyed");
    s->pending = 1;

    rc = NGX_OK;

    if (json_is_object(update)) {
        json_object_foreach(update, key, patch) {
            rc = ngx_http_mail_plus_jmap_sub_update(s, key, patch, 0);
            if (rc != NGX_OK) {
                break;
            }
        }
    }

    if (rc == NGX_OK && json_is_array(destroy)) {
        json_array_foreach(destroy, i, patch) {
            if (json_is_string(patch)) {
                rc = ngx_http_mail_plus_jmap_sub_update(s,
                                                 json_string_value(patch),
                                                 NULL, 1);
                if (rc != NGX_OK) {
                    break;
                }
            }
        }
    }

    if (rc != NGX_OK) {
        call->error = "serverFail";
    }

    /* the first count was this function's own */

    if (--s->pending == 0) {
        call->ctx->mailboxes = NULL;     /* the counts changed */
        ngx_http_mail_plus_jmap_sub_state(call);
    }
}


/*
 * one email: "#creation id" of a submission created (or its id) to its
 * email; SELECT, UID STORE of the keywords patched, UID MOVE for a
 * "mailboxIds/..." patch, or UID STORE \Deleted and UID EXPUNGE
 */

static ngx_int_t
ngx_http_mail_plus_jmap_sub_update(ngx_http_mail_plus_jmap_sub_t *s,
    const char *key, json_t *patch, ngx_uint_t destroy)
{
    u_char                              mid[18];
    json_t                             *sub, *v, *email;
    ngx_int_t                           rc;
    ngx_str_t                           id, plus, minus;
    const char                         *path, *sid;
    ngx_pool_t                         *pool;
    ngx_mail_plus_imap_t               *imap;
    ngx_mail_plus_imap_cmd_t           *cmd;
    ngx_http_mail_plus_jmap_ref_t       ref;
    ngx_http_mail_plus_jmap_ctx_t      *ctx;
    ngx_http_mail_plus_jmap_mailbox_t  *mb, *to;

    ctx = s->call->ctx;
    pool = s->pool;

    sid = (key[0] == '#') ? ngx_http_mail_plus_jmap_id(ctx, key) : key;
    sub = NULL;

    if (sid) {
        json_object_foreach(s->created, path, v) {
            if (ngx_strcmp(json_string_value(json_object_get(v, "id")), sid)
                == 0)
            {
                sub = v;
            }
        }
    }

    email = json_object_get(sub, "emailId");

    if (!json_is_string(email)) {
        return NGX_OK;   /* the submission failed: nothing to do */
    }

    id.data = (u_char *) json_string_value(email);
    id.len = json_string_length(email);

    mid[0] = 'M';

    if (ngx_http_mail_plus_jmap_ref(pool, &id, &ref) != 'E') {
        return NGX_OK;
    }

    ngx_memcpy(mid + 1, ref.mailbox, 16);
    mid[17] = '\0';
    mb = ctx->mailboxes ? ngx_http_mail_plus_jmap_mailbox_find(ctx->mailboxes,
                                                               mid)
                        : NULL;

    if (mb == NULL) {
        v = json_pack("{s:s}", "type", "notFound");
        return (v && json_object_set_new(destroy ? json_object_get(
                                              s->call->implicit,
                                              "notDestroyed")
                                          : s->not_updated,
                                          (char *) id.data, v) == 0)
               ? NGX_OK : NGX_ERROR;
    }

    /* the patch: keywords added and removed, a mailbox to move to */

    rc = ngx_http_mail_plus_jmap_sub_patch(s, patch, mid, &plus, &minus,
                                           &to);
    if (rc == NGX_DECLINED) {
        goto invalid;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    imap = ngx_http_mail_plus_jmap_imap(ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    /* SELECT; the STOREs, MOVE or EXPUNGE; the last one's answer counts */

    cmd = ngx_mail_plus_imap_cmd(imap, pool);
    if (cmd == NULL
        || ngx_mail_plus_imap_cmd_text(cmd, "SELECT ") != NGX_OK
        || ngx_mail_plus_imap_cmd_mailbox(cmd, &mb->path) != NGX_OK
        || ngx_http_mail_plus_jmap_sub_command(s, imap, cmd) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (destroy) {
        plus.len = ngx_sprintf(plus.data, "\\Deleted") - plus.data;
    }

    if (plus.len) {
        cmd = ngx_mail_plus_imap_cmd(imap, pool);
        if (cmd == NULL
            || ngx_mail_plus_imap_cmd_text(cmd, "UID STORE %uL +FLAGS.SILENT "
                                           "(%V)", ref.uid, &plus)
               != NGX_OK
            || ngx_http_mail_plus_jmap_sub_command(s, imap, cmd) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (minus.len) {
        cmd = ngx_mail_plus_imap_cmd(imap, pool);
        if (cmd == NULL
            || ngx_mail_plus_imap_cmd_text(cmd, "UID STORE %uL -FLAGS.SILENT "
                                           "(%V)", ref.uid, &minus)
               != NGX_OK
            || ngx_http_mail_plus_jmap_sub_command(s, imap, cmd) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (destroy || (to && to != mb)) {
        cmd = ngx_mail_plus_imap_cmd(imap, pool);
        if (cmd == NULL) {
            return NGX_ERROR;
        }

        if (destroy) {
            if (ngx_mail_plus_imap_cmd_text(cmd, "UID EXPUNGE %uL", ref.uid)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_mail_plus_imap_cmd_text(cmd, "UID MOVE %uL ", ref.uid)
                   != NGX_OK
                   || ngx_mail_plus_imap_cmd_mailbox(cmd, &to->path)
                      != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_http_mail_plus_jmap_sub_command(s, imap, cmd) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    email = json_string(json_string_value(email));

    if (destroy) {
        return (email && json_array_append_new(s->destroyed, email) == 0)
               ? NGX_OK : NGX_ERROR;
    }

    if (email == NULL
        || json_object_set_new(s->updated, json_string_value(email),
                               json_null())
           != 0)
    {
        json_decref(email);
        return NGX_ERROR;
    }

    json_decref(email);

    return NGX_OK;

invalid:

    v = json_pack("{s:s, s:s}", "type", "invalidPatch", "description",
                  "only keywords/... and mailboxIds/... (a move) are "
                  "supported");

    return (v && json_object_set_new(s->not_updated,
                                     json_string_value(email), v) == 0)
           ? NGX_OK : NGX_ERROR;
}


/* a patch of onSuccessUpdateEmail: NGX_OK, NGX_DECLINED (invalid) */

static ngx_int_t
ngx_http_mail_plus_jmap_sub_patch(ngx_http_mail_plus_jmap_sub_t *s,
    json_t *patch, u_char *mid, ngx_str_t *plus, ngx_str_t *minus,
    ngx_http_mail_plus_jmap_mailbox_t **to)
{
    u_char                         *p;
    json_t                         *sub, *v;
    ngx_str_t                       id, *dest;
    ngx_pool_t                     *pool;
    const char                     *path;
    ngx_http_mail_plus_jmap_ctx_t  *ctx;

    ctx = s->call->ctx;
    pool = s->pool;

    plus->data = ngx_pnalloc(pool, 1024);
    minus->data = ngx_pnalloc(pool, 1024);
    if (plus->data == NULL || minus->data == NULL) {
        return NGX_ERROR;
    }

    plus->len = 0;
    minus->len = 0;
    *to = NULL;

    json_object_foreach(patch, path, v) {
        if (ngx_strncmp(path, "keywords/", 9) == 0
            && (json_is_true(v) || json_is_null(v)))
        {
            sub = json_pack("{s:b}", path + 9, 1);
            if (sub == NULL) {
                return NGX_ERROR;
            }

            if (ngx_http_mail_plus_jmap_flags(pool, sub, &id) != NGX_OK
                || id.len > 255)
            {
                json_decref(sub);
                return NGX_DECLINED;
            }

            json_decref(sub);

            /* "(flag)" without its parentheses */

            dest = json_is_true(v) ? plus : minus;
            p = ngx_cpymem(dest->data + dest->len, dest->len ? " " : "",
                           dest->len ? 1 : 0);
            p = ngx_cpymem(p, id.data + 1, id.len - 2);
            dest->len = p - dest->data;

            if (dest->len > 700) {
                return NGX_DECLINED;
            }

        } else if (ngx_strncmp(path, "mailboxIds/", 11) == 0
                   && ngx_strlen(path + 11) == 17)
        {
            if (json_is_true(v)) {
                *to = ngx_http_mail_plus_jmap_mailbox_find(ctx->mailboxes,
                                                     (u_char *) path + 11);
                if (*to == NULL || (*to)->noselect) {
                    return NGX_DECLINED;
                }

            } else if (!json_is_null(v)
                       || ngx_strcmp(path + 11, (char *) mid) != 0)
            {
                return NGX_DECLINED;
            }

        } else {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_sub_command(ngx_http_mail_plus_jmap_sub_t *s,
    ngx_mail_plus_imap_t *imap, ngx_mail_plus_imap_cmd_t *cmd)
{
    cmd->handler = ngx_http_mail_plus_jmap_sub_updated;
    cmd->data = s;

    if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    s->pending++;

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_sub_updated(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_http_mail_plus_jmap_sub_t  *s;

    s = cmd->data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->call->request->connection->log, 0,
                   "http jmap submission: onSuccess command answered, rc %i, "
                   "status %d, %ui pending", cmd->rc, (int) cmd->status,
                   s->pending - 1);

    if (cmd->rc != NGX_OK || cmd->status != NGX_MAIL_PLUS_IMAP_OK) {
        s->call->error = s->call->error ? s->call->error : "serverFail";
    }

    if (--s->pending == 0) {
        s->call->ctx->mailboxes = NULL;
        ngx_http_mail_plus_jmap_sub_state(s->call);
    }
}


/* the Email state after the changes; the call answered */

static void
ngx_http_mail_plus_jmap_sub_state(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t  rc;
    ngx_str_t  state;

    if (call->error == NULL && call->ctx->mailboxes == NULL) {
        rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                           ngx_http_mail_plus_jmap_sub_state);
        if (rc == NGX_AGAIN) {
            return;
        }
    }

    if (call->error == NULL
        && (call->ctx->mailboxes == NULL
            || ngx_http_mail_plus_jmap_email_state(call->request->pool,
                                                   call->ctx->mailboxes,
                                                   &state)
               != NGX_OK
            || json_object_set_new(call->implicit, "newState",
                                   json_stringn((char *) state.data,
                                                state.len))
               != 0))
    {
        call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(call);
}


static void
ngx_http_mail_plus_jmap_sub_cleanup(void *data)
{
    ngx_http_mail_plus_jmap_sub_t  *s = data;

    if (s->spool.msg) {
        ngx_mail_plus_queue_abort(s->spool.msg);
        s->spool.msg = NULL;
    }
}


/* the header section (its last CRLF included) */

static ngx_int_t
ngx_http_mail_plus_jmap_header_end(ngx_str_t *message, ngx_str_t *header)
{
    u_char  *p, *last;

    last = message->data + message->len;

    for (p = message->data; p < last; p++) {
        if (*p == '\n' && p + 1 < last
            && (p[1] == '\n' || (p[1] == '\r' && p + 2 < last
                                 && p[2] == '\n')))
        {
            header->data = message->data;
            header->len = p + 1 - message->data;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


/*
 * the addresses of every field of the name (unfolded): NGX_OK,
 * NGX_DECLINED (none), NGX_ERROR
 */

static ngx_int_t
ngx_http_mail_plus_jmap_field(ngx_pool_t *pool, ngx_str_t *header,
    const char *name, ngx_array_t *addrs)
{
    u_char      *p, *last, *start, *end;
    size_t       len;
    ngx_uint_t   found;

    len = ngx_strlen(name);
    last = header->data + header->len;
    found = 0;

    for (p = header->data; p < last; p = end) {

        end = ngx_strlchr(p, last, '\n');
        end = end ? end + 1 : last;

        /* continuation lines go with their field */

        while (end < last && (*end == ' ' || *end == '\t')) {
            start = ngx_strlchr(end, last, '\n');
            end = start ? start + 1 : last;
        }

        if ((size_t) (end - p) <= len || p[len] != ':'
            || ngx_strncasecmp(p, (u_char *) name, len) != 0)
        {
            continue;
        }

        found = 1;

        if (ngx_http_mail_plus_jmap_address_list(pool, p + len + 1, end,
                                                 addrs)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return found ? NGX_OK : NGX_DECLINED;
}


/*
 * an address-list, loosely: quoted strings and comments skipped, each
 * element's <addr-spec> or the element itself; groups' names dropped
 */

static ngx_int_t
ngx_http_mail_plus_jmap_address_list(ngx_pool_t *pool, u_char *p,
    u_char *last, ngx_array_t *addrs)
{
    u_char      *q, buf[256];
    ngx_str_t   *a;
    ngx_uint_t   depth, closed;

    q = buf;
    closed = 0;

    for ( ;; ) {

        if (p == last || *p == ',' || *p == ';') {

            if (q > buf) {
                a = ngx_array_push(addrs);
                if (a == NULL) {
                    return NGX_ERROR;
                }

                a->len = q - buf;
                a->data = ngx_pnalloc(pool, a->len);
                if (a->data == NULL) {
                    return NGX_ERROR;
                }

                ngx_memcpy(a->data, buf, a->len);
            }

            if (p == last) {
                return NGX_OK;
            }

            q = buf;
            closed = 0;
            p++;
            continue;
        }

        switch (*p) {

        case '"':
            for (p++; p < last && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < last) {
                    p++;
                }
            }

            if (p < last) {
                p++;
            }

            continue;

        case '(':
            depth = 0;

            for ( /* void */ ; p < last; p++) {
                if (*p == '\\' && p + 1 < last) {
                    p++;

                } else if (*p == '(') {
                    depth++;

                } else if (*p == ')' && --depth == 0) {
                    p++;
                    break;
                }
            }

            continue;

        case ':':      /* a group's name */
        case '<':      /* the display name before it */
            q = buf;
            p++;
            continue;

        case '>':
            closed = 1;
            p++;
            continue;

        case ' ':
        case '\t':
        case '\r':
        case '\n':
            p++;
            continue;

        default:
            if (!closed && q < buf + sizeof(buf)) {
                *q++ = *p;
            }

            p++;
        }
    }
}


/* the message without its Bcc fields */

static ngx_int_t
ngx_http_mail_plus_jmap_without_bcc(ngx_pool_t *pool, ngx_str_t *message,
    ngx_str_t *header, ngx_str_t *copy)
{
    u_char  *p, *q, *last, *end, *start;

    copy->data = ngx_pnalloc(pool, message->len);
    if (copy->data == NULL) {
        return NGX_ERROR;
    }

    q = copy->data;
    last = header->data + header->len;

    for (p = header->data; p < last; p = end) {
        end = ngx_strlchr(p, last, '\n');
        end = end ? end + 1 : last;

        while (end < last && (*end == ' ' || *end == '\t')) {
            start = ngx_strlchr(end, last, '\n');
            end = start ? start + 1 : last;
        }

        if (end - p > 4 && p[3] == ':'
            && ngx_strncasecmp(p, (u_char *) "Bcc", 3) == 0)
        {
            continue;
        }

        q = ngx_cpymem(q, p, end - p);
    }

    q = ngx_cpymem(q, last, message->data + message->len - last);

    copy->len = q - copy->data;

    return NGX_OK;
}
