
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"
#include "ngx_http_mail_plus_jmap_blob.h"
#include "ngx_http_mail_plus_jmap_message.h"


/*
 * Messages made or imported (RFC 8621, 4.6 create and 4.8 Email/import):
 * each object checked against the user's mailboxes, its message made by
 * the builder (ngx_http_mail_plus_jmap_message.c) or taken from an
 * upload, and APPENDed with its flags and date; the id comes from the
 * APPENDUID of UIDPLUS.  The APPENDs are queued at once, and the caller's
 * next step runs when the last one has answered.
 */


typedef struct {
    ngx_http_mail_plus_jmap_call_t     *call;
    json_t                             *objects;      /* borrowed */
    json_t                             *created;
    json_t                             *not_created;
    ngx_http_mail_plus_jmap_next_pt     next;
    void                               *saved;        /* call->data */
    ngx_uint_t                          pending;
    unsigned                            import:1;
} ngx_http_mail_plus_jmap_compose_t;


typedef struct {
    ngx_http_mail_plus_jmap_compose_t  *cp;
    char                               *key;          /* the creation id */
    u_char                              mailbox[17];
    size_t                              size;
} ngx_http_mail_plus_jmap_append_t;


static void ngx_http_mail_plus_jmap_compose_mailboxes(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_compose_run(
    ngx_http_mail_plus_jmap_compose_t *cp);
static ngx_int_t ngx_http_mail_plus_jmap_compose_one(
    ngx_http_mail_plus_jmap_compose_t *cp, const char *key, json_t *email);
static ngx_int_t ngx_http_mail_plus_jmap_compose_message(
    ngx_http_mail_plus_jmap_compose_t *cp, const char *key, json_t *email,
    ngx_str_t *message);
static ngx_int_t ngx_http_mail_plus_jmap_compose_blob(void *data,
    ngx_str_t *blob_id, ngx_str_t *bytes);
static ngx_int_t ngx_http_mail_plus_jmap_compose_append(
    ngx_http_mail_plus_jmap_compose_t *cp, const char *key,
    ngx_http_mail_plus_jmap_mailbox_t *mb, ngx_str_t *flags, time_t date,
    ngx_str_t *message);
static void ngx_http_mail_plus_jmap_compose_appended(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_compose_created(
    ngx_http_mail_plus_jmap_append_t *ap, uint64_t uidvalidity,
    uint64_t uid);
static void ngx_http_mail_plus_jmap_compose_finish(
    ngx_http_mail_plus_jmap_compose_t *cp);
static ngx_int_t ngx_http_mail_plus_jmap_compose_refuse(
    ngx_http_mail_plus_jmap_compose_t *cp, const char *key,
    const char *type, const char *description, const char *property);
static void ngx_http_mail_plus_jmap_imported(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_import_done(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_import_state(
    ngx_http_mail_plus_jmap_call_t *call);


static const char  *ngx_http_mail_plus_jmap_mon[] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
    "Nov", "Dec" };


ngx_int_t
ngx_http_mail_plus_jmap_email_create(ngx_http_mail_plus_jmap_call_t *call,
    json_t *create, json_t *created, json_t *not_created,
    ngx_http_mail_plus_jmap_next_pt next)
{
    ngx_int_t                           rc;
    ngx_http_mail_plus_jmap_compose_t  *cp;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap compose: create %uz",
                   (size_t) json_object_size(create));

    if (!json_is_object(create) || json_object_size(create) == 0) {
        return NGX_OK;
    }

    cp = ngx_pcalloc(call->request->pool,
                     sizeof(ngx_http_mail_plus_jmap_compose_t));
    if (cp == NULL) {
        return NGX_ERROR;
    }

    cp->call = call;
    cp->objects = create;
    cp->created = created;
    cp->not_created = not_created;
    cp->next = next;
    cp->saved = call->data;

    /* the mailboxes' handler finds the state as the call's data */

    call->data = cp;

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                     ngx_http_mail_plus_jmap_compose_mailboxes);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    call->data = cp->saved;

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_compose_run(cp);

    if (rc == NGX_AGAIN) {
        call->data = cp;
    }

    return rc;
}


/* the mailboxes are known (from an event) */

static void
ngx_http_mail_plus_jmap_compose_mailboxes(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                           rc;
    ngx_http_mail_plus_jmap_compose_t  *cp;

    cp = call->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap compose: mailboxes %s",
                   call->ctx->mailboxes ? "known" : "failed");

    if (call->ctx->mailboxes == NULL) {
        call->data = cp->saved;
        cp->next(call);
        return;
    }

    rc = ngx_http_mail_plus_jmap_compose_run(cp);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        call->error = "serverFail";
    }

    call->data = cp->saved;
    cp->next(call);
}


/* each object: refused, or its APPEND queued; NGX_AGAIN while any runs */

static ngx_int_t
ngx_http_mail_plus_jmap_compose_run(ngx_http_mail_plus_jmap_compose_t *cp)
{
    json_t      *email;
    const char  *key;

    json_object_foreach(cp->objects, key, email) {
        if (ngx_http_mail_plus_jmap_compose_one(cp, key, email) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return cp->pending ? NGX_AGAIN : NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_compose_one(ngx_http_mail_plus_jmap_compose_t *cp,
    const char *key, json_t *email)
{
    time_t                              date;
    json_t                             *ids, *v;
    ngx_int_t                           rc, offset;
    ngx_str_t                           flags, message;
    const char                         *id, *name;
    ngx_http_mail_plus_jmap_ctx_t      *ctx;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    ctx = cp->call->ctx;

    ids = json_object_get(email, "mailboxIds");

    if (!json_is_object(email) || !json_is_object(ids)
        || json_object_size(ids) != 1)
    {
        return ngx_http_mail_plus_jmap_compose_refuse(cp, key,
                                            "invalidProperties",
                                            "exactly one mailbox is needed",
                                            "mailboxIds");
    }

    mb = NULL;

    json_object_foreach(ids, name, v) {
        id = ngx_http_mail_plus_jmap_id(ctx, name);

        if (json_is_true(v) && id && ngx_strlen(id) == 17) {
            mb = ngx_http_mail_plus_jmap_mailbox_find(ctx->mailboxes,
                                                      (u_char *) id);
        }
    }

    if (mb == NULL || mb->noselect) {
        return ngx_http_mail_plus_jmap_compose_refuse(cp, key,
                                                 "invalidProperties",
                                                 "no such mailbox",
                                                 "mailboxIds");
    }

    rc = ngx_http_mail_plus_jmap_flags(cp->call->request->pool,
                                       json_object_get(email, "keywords"),
                                       &flags);
    if (rc == NGX_DECLINED) {
        return ngx_http_mail_plus_jmap_compose_refuse(cp, key,
                                                "invalidProperties",
                                                "keywords are names of "
                                                "IMAP flags set to true",
                                                "keywords");
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    date = ngx_time();
    v = json_object_get(email, "receivedAt");

    if (v && !json_is_null(v)
        && (!json_is_string(v)
            || ngx_http_mail_plus_jmap_parse_date(json_string_value(v),
                                                  &date, &offset)
               != NGX_OK))
    {
        return ngx_http_mail_plus_jmap_compose_refuse(cp, key,
                                                 "invalidProperties",
                                                 "a date is expected",
                                                 "receivedAt");
    }

    rc = ngx_http_mail_plus_jmap_compose_message(cp, key, email, &message);

    if (rc == NGX_DECLINED) {
        return NGX_OK;   /* refused */
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_mail_plus_jmap_compose_append(cp, key, mb, &flags, date,
                                                  &message);
}


/* the message made, or the upload imported; NGX_DECLINED: refused */

static ngx_int_t
ngx_http_mail_plus_jmap_compose_message(ngx_http_mail_plus_jmap_compose_t *cp,
    const char *key, json_t *email, ngx_str_t *message)
{
    json_t                             *v, *err;
    ngx_int_t                           rc;
    ngx_str_t                           blob_id;
    ngx_http_request_t                 *r;
    ngx_http_core_srv_conf_t           *cscf;
    ngx_http_mail_plus_jmap_message_t   m;

    r = cp->call->request;

    if (cp->import) {
        v = json_object_get(email, "blobId");

        if (!json_is_string(v)) {
            rc = ngx_http_mail_plus_jmap_compose_refuse(cp, key,
                                                   "invalidProperties",
                                                   "a blobId is expected",
                                                   "blobId");
            return rc == NGX_OK ? NGX_DECLINED : rc;
        }

        blob_id.data = (u_char *) json_string_value(v);
        blob_id.len = json_string_length(v);

        rc = ngx_http_mail_plus_jmap_compose_blob(cp, &blob_id, message);

        if (rc == NGX_OK && message->len == 0) {
            rc = ngx_http_mail_plus_jmap_compose_refuse(cp, key,
                                                   "invalidEmail",
                                                   "an empty message", NULL);
            return rc == NGX_OK ? NGX_DECLINED : rc;
        }

        if (rc != NGX_DECLINED) {
            return rc;
        }

        ngx_memzero(&m, sizeof(ngx_http_mail_plus_jmap_message_t));
        m.type = "blobNotFound";
        m.blob_id = blob_id;

    } else {
        ngx_memzero(&m, sizeof(ngx_http_mail_plus_jmap_message_t));

        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

        m.pool = r->pool;
        m.now = ngx_time();
        m.blob = ngx_http_mail_plus_jmap_compose_blob;
        m.data = cp;
        m.host = cscf->server_name.len ? cscf->server_name
                                       : ngx_cycle->hostname;

        rc = ngx_http_mail_plus_jmap_message(&m, email);

        if (rc == NGX_OK) {
            *message = m.message;
            return NGX_OK;
        }

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap compose: \"%s\" refused: %s", m.type,
                   m.error ? m.error : "");

    if (ngx_strcmp(m.type, "blobNotFound") == 0) {
        err = json_pack("{s:s, s:[s%]}", "type", "blobNotFound",
                        "notFound", (char *) m.blob_id.data,
                        m.blob_id.len);

        if (err == NULL
            || json_object_set_new(cp->not_created, key, err) != 0)
        {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    rc = ngx_http_mail_plus_jmap_compose_refuse(cp, key, m.type, m.error,
                                                m.property);

    return rc == NGX_OK ? NGX_DECLINED : rc;
}


/* an attachment's or an import's bytes: an upload of the account */

static ngx_int_t
ngx_http_mail_plus_jmap_compose_blob(void *data, ngx_str_t *blob_id,
    ngx_str_t *bytes)
{
    ngx_http_mail_plus_jmap_compose_t *cp = data;

    return ngx_http_mail_plus_jmap_upload_read(cp->call->request,
                                               &cp->call->ctx->account_id,
                                               blob_id, bytes);
}


/* "APPEND mailbox (flags) "date" {n}" and the message */

static ngx_int_t
ngx_http_mail_plus_jmap_compose_append(ngx_http_mail_plus_jmap_compose_t *cp,
    const char *key, ngx_http_mail_plus_jmap_mailbox_t *mb, ngx_str_t *flags,
    time_t date, ngx_str_t *message)
{
    size_t                             len;
    ngx_tm_t                           tm;
    ngx_pool_t                        *pool;
    ngx_mail_plus_imap_t              *imap;
    ngx_mail_plus_imap_cmd_t          *cmd;
    ngx_http_mail_plus_jmap_append_t  *ap;

    pool = cp->call->request->pool;

    imap = ngx_http_mail_plus_jmap_imap(cp->call->ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    ap = ngx_pcalloc(pool, sizeof(ngx_http_mail_plus_jmap_append_t));
    if (ap == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(key);

    ap->cp = cp;
    ap->key = ngx_pnalloc(pool, len + 1);
    if (ap->key == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ap->key, key, len + 1);
    ngx_memcpy(ap->mailbox, mb->id, 17);
    ap->size = message->len;

    cmd = ngx_mail_plus_imap_cmd(imap, pool);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->handler = ngx_http_mail_plus_jmap_compose_appended;
    cmd->data = ap;

    ngx_gmtime(date, &tm);

    if (ngx_mail_plus_imap_cmd_text(cmd, "APPEND ") != NGX_OK
        || ngx_mail_plus_imap_cmd_mailbox(cmd, &mb->path) != NGX_OK
        || ngx_mail_plus_imap_cmd_text(cmd,
                                " %V \"%02d-%s-%4d %02d:%02d:%02d +0000\" ",
                                flags, tm.ngx_tm_mday,
                                ngx_http_mail_plus_jmap_mon[tm.ngx_tm_mon - 1],
                                tm.ngx_tm_year, tm.ngx_tm_hour,
                                tm.ngx_tm_min, tm.ngx_tm_sec)
           != NGX_OK
        || ngx_mail_plus_imap_cmd_literal(cmd, message) != NGX_OK
        || ngx_mail_plus_imap_send(cmd) != NGX_OK)
    {
        return NGX_ERROR;
    }

    cp->pending++;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cp->call->request->connection->log, 0,
                   "http jmap compose: APPEND of %uz bytes to %s queued, "
                   "%ui pending", message->len, ap->mailbox, cp->pending);

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_compose_appended(ngx_mail_plus_imap_cmd_t *cmd)
{
    uint64_t                            uidvalidity, uid;
    ngx_int_t                           rc;
    const char                         *type;
    ngx_http_mail_plus_jmap_append_t   *ap;
    ngx_http_mail_plus_jmap_compose_t  *cp;

    ap = cmd->data;
    cp = ap->cp;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cp->call->request->connection->log, 0,
                   "http jmap compose: APPEND of \"%s\" answered, rc %i, "
                   "status %d", ap->key, cmd->rc, (int) cmd->status);

    if (cmd->rc == NGX_OK && cmd->status == NGX_MAIL_PLUS_IMAP_OK
        && ngx_mail_plus_imap_atom_is(ngx_mail_plus_imap_item(cmd->code, 0),
                                      "APPENDUID", 9)
        && ngx_mail_plus_imap_number(ngx_mail_plus_imap_item(cmd->code, 1),
                                     &uidvalidity)
           == NGX_OK
        && ngx_mail_plus_imap_number(ngx_mail_plus_imap_item(cmd->code, 2),
                                     &uid)
           == NGX_OK)
    {
        rc = ngx_http_mail_plus_jmap_compose_created(ap, uidvalidity, uid);

    } else {
        type = "serverFail";

        if (cmd->rc == NGX_OK && cmd->status == NGX_MAIL_PLUS_IMAP_NO) {
            if (ngx_mail_plus_imap_atom_is(
                    ngx_mail_plus_imap_item(cmd->code, 0), "OVERQUOTA", 9))
            {
                type = "overQuota";

            } else if (ngx_mail_plus_imap_atom_is(
                           ngx_mail_plus_imap_item(cmd->code, 0),
                           "TOOBIG", 6))
            {
                type = "tooLarge";
            }
        }

        rc = ngx_http_mail_plus_jmap_compose_refuse(cp, ap->key, type,
                                        cmd->rc == NGX_OK
                                        ? "the backend refused the message"
                                        : "the backend is not available",
                                        NULL);
    }

    if (rc != NGX_OK) {
        cp->call->error = "serverFail";
    }

    if (--cp->pending == 0) {
        ngx_http_mail_plus_jmap_compose_finish(cp);
    }
}


static ngx_int_t
ngx_http_mail_plus_jmap_compose_created(ngx_http_mail_plus_jmap_append_t *ap,
    uint64_t uidvalidity, uint64_t uid)
{
    json_t                             *obj;
    ngx_str_t                           id, blob, thread;
    ngx_pool_t                         *pool;
    ngx_http_mail_plus_jmap_ref_t       ref;
    ngx_http_mail_plus_jmap_compose_t  *cp;

    cp = ap->cp;
    pool = cp->call->request->pool;

    ngx_memzero(&ref, sizeof(ngx_http_mail_plus_jmap_ref_t));
    ngx_memcpy(ref.mailbox, ap->mailbox + 1, 16);
    ref.uidvalidity = uidvalidity;
    ref.uid = uid;

    if (ngx_http_mail_plus_jmap_ref_id(pool, 'E', &ref, &id) != NGX_OK
        || ngx_http_mail_plus_jmap_ref_id(pool, 'B', &ref, &blob) != NGX_OK
        || ngx_http_mail_plus_jmap_ref_id(pool, 'T', &ref, &thread) != NGX_OK)
    {
        return NGX_ERROR;
    }

    obj = json_pack("{s:s%, s:s%, s:s%, s:I}",
                    "id", (char *) id.data, id.len,
                    "blobId", (char *) blob.data, blob.len,
                    "threadId", (char *) thread.data, thread.len,
                    "size", (json_int_t) ap->size);

    if (obj == NULL
        || json_object_set_new(cp->created, ap->key, obj) != 0)
    {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cp->call->request->connection->log, 0,
                   "http jmap compose: \"%s\" created as %V", ap->key, &id);

    obj = json_object_get(json_object_get(cp->created, ap->key), "id");

    return ngx_http_mail_plus_jmap_created(cp->call->ctx, ap->key,
                                           json_string_value(obj));
}


static void
ngx_http_mail_plus_jmap_compose_finish(ngx_http_mail_plus_jmap_compose_t *cp)
{
    ngx_http_mail_plus_jmap_call_t  *call;

    call = cp->call;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap compose: all APPENDs answered");

    /* the counts changed */

    call->ctx->mailboxes = NULL;

    call->data = cp->saved;
    cp->next(call);
}


static ngx_int_t
ngx_http_mail_plus_jmap_compose_refuse(ngx_http_mail_plus_jmap_compose_t *cp,
    const char *key, const char *type, const char *description,
    const char *property)
{
    json_t  *err;

    if (property) {
        err = json_pack("{s:s, s:s, s:[s]}", "type", type,
                        "description", description, "properties", property);

    } else {
        err = json_pack("{s:s, s:s}", "type", type,
                        "description", description);
    }

    if (err == NULL || json_object_set_new(cp->not_created, key, err) != 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Email/import (RFC 8621 4.8): {accountId, emails: {creation id:
 * {blobId, mailboxIds, keywords, receivedAt}}}; the uploads APPENDed
 * as they are
 */

ngx_int_t
ngx_http_mail_plus_jmap_email_import(ngx_http_mail_plus_jmap_call_t *call)
{
    json_t                             *emails, *account;
    ngx_int_t                           rc;
    ngx_http_mail_plus_jmap_compose_t  *cp;

    account = json_object_get(call->args, "accountId");
    emails = json_object_get(call->args, "emails");

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    if (!json_is_object(emails)) {
        call->error = "invalidArguments";
        call->description = "\"emails\" is an object";
        return NGX_OK;
    }

    if (ngx_http_mail_plus_jmap_creation_ids(call, emails) != NGX_OK) {
        return NGX_OK;
    }

    call->result = json_pack("{s:O, s:n, s:{}, s:{}}", "accountId", account,
                             "oldState", "created", "notCreated");
    if (call->result == NULL) {
        return NGX_ERROR;
    }

    cp = ngx_pcalloc(call->request->pool,
                     sizeof(ngx_http_mail_plus_jmap_compose_t));
    if (cp == NULL) {
        return NGX_ERROR;
    }

    cp->call = call;
    cp->objects = emails;
    cp->created = json_object_get(call->result, "created");
    cp->not_created = json_object_get(call->result, "notCreated");
    cp->next = ngx_http_mail_plus_jmap_imported;
    cp->import = 1;

    call->data = cp;

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                     ngx_http_mail_plus_jmap_compose_mailboxes);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_mail_plus_jmap_compose_run(cp);

    if (rc != NGX_OK) {
        return rc;
    }

    /* nothing was appended: the state is the one known */

    ngx_http_mail_plus_jmap_import_state(call);

    return NGX_OK;
}


/* the APPENDs are answered (an event): the mailboxes asked again */

static void
ngx_http_mail_plus_jmap_imported(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t  rc;

    if (call->error == NULL) {
        rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                       ngx_http_mail_plus_jmap_import_done);
        if (rc == NGX_AGAIN) {
            return;
        }

        if (rc == NGX_OK) {
            ngx_http_mail_plus_jmap_import_state(call);

        } else {
            call->error = "serverFail";
        }
    }

    ngx_http_mail_plus_jmap_done(call);
}


static void
ngx_http_mail_plus_jmap_import_done(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_http_mail_plus_jmap_import_state(call);
    ngx_http_mail_plus_jmap_done(call);
}


/* "newState" from the mailboxes as they are now */

static void
ngx_http_mail_plus_jmap_import_state(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_str_t  state;

    if (call->error) {
        return;
    }

    if (call->ctx->mailboxes == NULL
        || ngx_http_mail_plus_jmap_email_state(call->request->pool,
                                               call->ctx->mailboxes, &state)
           != NGX_OK
        || json_object_set_new(call->result, "newState",
                               json_stringn((char *) state.data, state.len))
           != 0)
    {
        call->error = "serverFail";
    }
}
