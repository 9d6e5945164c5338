
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_md5.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * The user's mailboxes (RFC 8621, section 2) as the mail methods share
 * them, and Mailbox/get and Mailbox/changes.
 *
 * The list is one LIST "" "*" with RETURN (SPECIAL-USE SUBSCRIBED STATUS
 * (...)) where the backend offers LIST-STATUS (RFC 5819), else LIST, LSUB
 * and a STATUS for each selectable mailbox.  Names are decoded from
 * modified UTF-7; one that is not valid is left out (and logged).  A
 * mailbox's parent is the nearest listed mailbox whose name and the
 * delimiter begin its name; its "name" is what follows.  Roles come from
 * the SPECIAL-USE attributes (RFC 6154), and INBOX's name.
 *
 * IMAP keeps no history of its mailboxes: the Mailbox state is a digest
 * of the list as it is, and Mailbox/changes can only tell that nothing
 * changed, or "cannotCalculateChanges".
 */


typedef struct {
    ngx_http_mail_plus_jmap_call_t        *call;
    ngx_http_mail_plus_jmap_mailboxes_pt   handler;
    ngx_array_t                           *list;     /* of mailbox_t */
    ngx_array_t                            raw;      /* of ngx_str_t: the
                                                        names as sent */
    ngx_uint_t                             pending;  /* STATUS commands */
    unsigned                               failed:1;
} ngx_http_mail_plus_jmap_mblist_t;


typedef struct {
    const char                            *attribute;
    const char                            *role;
} ngx_http_mail_plus_jmap_role_t;


static void ngx_http_mail_plus_jmap_list_unselected(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_list_prepare(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_list_untagged(
    ngx_mail_plus_imap_cmd_t *cmd, ngx_mail_plus_imap_response_t *resp);
static ngx_int_t ngx_http_mail_plus_jmap_list_entry(
    ngx_http_mail_plus_jmap_mblist_t *ml, ngx_mail_plus_imap_t *imap,
    ngx_mail_plus_imap_response_t *resp, ngx_uint_t lsub);
static void ngx_http_mail_plus_jmap_list_attributes(
    ngx_http_mail_plus_jmap_mailbox_t *mb, ngx_mail_plus_imap_value_t *attrs,
    ngx_uint_t lsub);
static ngx_http_mail_plus_jmap_mailbox_t *ngx_http_mail_plus_jmap_list_raw(
    ngx_http_mail_plus_jmap_mblist_t *ml, ngx_str_t *raw);
static void ngx_http_mail_plus_jmap_list_status(
    ngx_http_mail_plus_jmap_mblist_t *ml, ngx_mail_plus_imap_value_t *data);
static void ngx_http_mail_plus_jmap_list_handler(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_list_statuses(
    ngx_http_mail_plus_jmap_mblist_t *ml, ngx_mail_plus_imap_t *imap);
static void ngx_http_mail_plus_jmap_status_handler(
    ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_list_done(
    ngx_http_mail_plus_jmap_mblist_t *ml);
static void ngx_http_mail_plus_jmap_list_tree(ngx_array_t *list);
static const char *ngx_http_mail_plus_jmap_list_fail(
    ngx_mail_plus_imap_cmd_t *cmd);

static ngx_int_t ngx_http_mail_plus_jmap_mailbox_get(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_mailbox_got(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_mailbox_answer(
    ngx_http_mail_plus_jmap_call_t *call);
static json_t *ngx_http_mail_plus_jmap_mailbox_json(
    ngx_http_mail_plus_jmap_mailbox_t *mb, ngx_array_t *list,
    json_t *properties);
static json_t *ngx_http_mail_plus_jmap_mailbox_rights(
    ngx_http_mail_plus_jmap_mailbox_t *mb);
static ngx_int_t ngx_http_mail_plus_jmap_mailbox_changes(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_mailbox_changed(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_mailbox_since(
    ngx_http_mail_plus_jmap_call_t *call);


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_mailbox[] = {
    { "Mailbox/get", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_mailbox_get },
    { "Mailbox/changes", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_mailbox_changes },
    { NULL, 0, NULL }
};


static ngx_http_mail_plus_jmap_role_t  ngx_http_mail_plus_jmap_roles[] = {
    { "\\Sent", "sent" },
    { "\\Drafts", "drafts" },
    { "\\Trash", "trash" },
    { "\\Junk", "junk" },
    { "\\Archive", "archive" },
    { "\\All", "all" },
    { "\\Flagged", "flagged" },
    { NULL, NULL }
};


static const char  *ngx_http_mail_plus_jmap_mailbox_properties[] = {
    "id", "name", "parentId", "role", "sortOrder", "totalEmails",
    "unreadEmails", "totalThreads", "unreadThreads", "myRights",
    "isSubscribed", NULL
};


/* the list */

ngx_int_t
ngx_http_mail_plus_jmap_mailboxes(ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_mailboxes_pt handler)
{
    ngx_pool_t                        *pool;
    ngx_mail_plus_imap_t              *imap;
    ngx_mail_plus_imap_cmd_t          *cmd;
    ngx_http_mail_plus_jmap_ctx_t     *ctx;
    ngx_http_mail_plus_jmap_mblist_t  *ml;

    ctx = call->ctx;

    if (ctx->mailboxes) {
        return NGX_OK;
    }

    imap = ngx_http_mail_plus_jmap_imap(ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    pool = call->request->pool;

    ml = ngx_pcalloc(pool, sizeof(ngx_http_mail_plus_jmap_mblist_t));
    if (ml == NULL) {
        return NGX_ERROR;
    }

    ml->call = call;
    ml->handler = handler;

    ml->list = ngx_array_create(pool, 16,
                                sizeof(ngx_http_mail_plus_jmap_mailbox_t));
    if (ml->list == NULL
        || ngx_array_init(&ml->raw, pool, 16, sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * a mailbox left selected (by a call before, or the session's last
     * request) is brought up to date first: a backend answers STATUS of
     * the selected mailbox from the session's own view (Dovecot does),
     * which misses what other sessions changed since it was last synced;
     * a NOOP syncs it, and leaves it selected for the calls that follow
     */

    if (imap->selected.len) {
        cmd = ngx_mail_plus_imap_cmd(imap, pool);
        if (cmd == NULL
            || ngx_mail_plus_imap_cmd_text(cmd, "NOOP") != NGX_OK)
        {
            return NGX_ERROR;
        }

        cmd->handler = ngx_http_mail_plus_jmap_list_unselected;

        if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    cmd = ngx_mail_plus_imap_cmd(imap, pool);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->prepare = ngx_http_mail_plus_jmap_list_prepare;
    cmd->untagged_handler = ngx_http_mail_plus_jmap_list_untagged;
    cmd->handler = ngx_http_mail_plus_jmap_list_handler;
    cmd->data = ml;

    if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap: mailbox list asked");

    return NGX_AGAIN;
}


/* the NOOP before a LIST: whatever it answers, the LIST goes on */

static void
ngx_http_mail_plus_jmap_list_unselected(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cmd->imap->log, 0,
                   "http jmap: mailbox synced before the list: %d",
                   (int) cmd->status);
}


/* the LIST as the backend can take it, once it is known */

static ngx_int_t
ngx_http_mail_plus_jmap_list_prepare(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_mail_plus_imap_t  *imap;

    imap = cmd->imap;

    if (!imap->list_status) {
        return ngx_mail_plus_imap_cmd_text(cmd, "LIST \"\" \"*\"");
    }

    return ngx_mail_plus_imap_cmd_text(cmd, "LIST \"\" \"*\" RETURN "
                                       "(%sSUBSCRIBED STATUS (MESSAGES "
                                       "UNSEEN UIDVALIDITY UIDNEXT%s))",
                                       imap->special_use ? "SPECIAL-USE "
                                                         : "",
                                       imap->condstore ? " HIGHESTMODSEQ"
                                                       : "");
}


static ngx_int_t
ngx_http_mail_plus_jmap_list_untagged(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_mail_plus_imap_response_t *resp)
{
    ngx_http_mail_plus_jmap_mblist_t  *ml;

    ml = cmd->data;

    if (resp->status != NGX_MAIL_PLUS_IMAP_DATA) {
        return NGX_OK;
    }

    if (resp->name.len == 4
        && ngx_strncasecmp(resp->name.data, (u_char *) "LIST", 4) == 0)
    {
        return ngx_http_mail_plus_jmap_list_entry(ml, cmd->imap, resp, 0);
    }

    if (resp->name.len == 4
        && ngx_strncasecmp(resp->name.data, (u_char *) "LSUB", 4) == 0)
    {
        return ngx_http_mail_plus_jmap_list_entry(ml, cmd->imap, resp, 1);
    }

    if (resp->name.len == 6
        && ngx_strncasecmp(resp->name.data, (u_char *) "STATUS", 6) == 0)
    {
        ngx_http_mail_plus_jmap_list_status(ml, resp->data);
    }

    return NGX_OK;
}


/* (attributes) delimiter name: a mailbox, or an LSUB's subscription */

static ngx_int_t
ngx_http_mail_plus_jmap_list_entry(ngx_http_mail_plus_jmap_mblist_t *ml,
    ngx_mail_plus_imap_t *imap, ngx_mail_plus_imap_response_t *resp,
    ngx_uint_t lsub)
{
    ngx_int_t                           rc;
    ngx_str_t                           raw, delim, *slot;
    ngx_pool_t                         *pool;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;
    ngx_mail_plus_imap_value_t         *attrs;

    pool = ml->call->request->pool;
    attrs = ngx_mail_plus_imap_item(resp->data, 0);

    if (attrs == NULL || attrs->type != NGX_MAIL_PLUS_IMAP_LIST
        || ngx_mail_plus_imap_string(ngx_mail_plus_imap_item(resp->data, 2),
                                     &raw)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, imap->log, 0,
                      "jmap: a LIST response not understood, left out");
        return NGX_OK;
    }

    rc = ngx_mail_plus_imap_string(ngx_mail_plus_imap_item(resp->data, 1),
                                   &delim);
    if (rc == NGX_DECLINED) {
        ngx_str_null(&delim);     /* NIL: flat */
    }

    if (rc == NGX_ERROR || (rc == NGX_OK && delim.len != 1)) {
        ngx_log_error(NGX_LOG_WARN, imap->log, 0,
                      "jmap: a LIST response's delimiter not understood, "
                      "left out");
        return NGX_OK;
    }

    if (lsub) {
        mb = ngx_http_mail_plus_jmap_list_raw(ml, &raw);
        if (mb) {
            mb->subscribed = 1;
        }

        return NGX_OK;
    }

    mb = ngx_array_push(ml->list);
    if (mb == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(mb, sizeof(ngx_http_mail_plus_jmap_mailbox_t));

    rc = ngx_mail_plus_imap_mailbox_name(imap, pool, &raw, &mb->path);

    if (rc != NGX_OK || mb->path.len == 0) {
        ml->list->nelts--;

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        ngx_log_error(NGX_LOG_WARN, imap->log, 0,
                      "jmap: a mailbox name that is not valid modified "
                      "UTF-7 left out");
        return NGX_OK;
    }

    slot = ngx_array_push(&ml->raw);
    if (slot == NULL) {
        return NGX_ERROR;
    }

    *slot = raw;

    mb->delimiter = delim.len == 1 ? delim.data[0] : 0;
    mb->parent = -1;
    mb->name = mb->path;
    ngx_http_mail_plus_jmap_mailbox_id(&mb->path, mb->id);

    if (mb->path.len == 5
        && ngx_strncasecmp(mb->path.data, (u_char *) "INBOX", 5) == 0)
    {
        mb->role = "inbox";
    }

    ngx_http_mail_plus_jmap_list_attributes(mb, attrs, 0);

    /* LIST-STATUS: "* STATUS" follows its mailbox */

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_list_attributes(ngx_http_mail_plus_jmap_mailbox_t *mb,
    ngx_mail_plus_imap_value_t *attrs, ngx_uint_t lsub)
{
    ngx_uint_t                       i;
    ngx_mail_plus_imap_value_t      *a;
    ngx_http_mail_plus_jmap_role_t  *role;

    for (i = 0; (a = ngx_mail_plus_imap_item(attrs, i)); i++) {

        if (ngx_mail_plus_imap_atom_is(a, "\\Noselect", 9)
            || ngx_mail_plus_imap_atom_is(a, "\\NonExistent", 12))
        {
            mb->noselect = 1;
            continue;
        }

        if (ngx_mail_plus_imap_atom_is(a, "\\Subscribed", 11)) {
            mb->subscribed = 1;
            continue;
        }

        if (mb->role) {
            continue;
        }

        for (role = ngx_http_mail_plus_jmap_roles; role->attribute; role++) {
            if (ngx_mail_plus_imap_atom_is(a, (char *) role->attribute,
                                           ngx_strlen(role->attribute)))
            {
                mb->role = role->role;
                break;
            }
        }
    }
}


/* a mailbox by its name as sent: the last one first (LIST-STATUS) */

static ngx_http_mail_plus_jmap_mailbox_t *
ngx_http_mail_plus_jmap_list_raw(ngx_http_mail_plus_jmap_mblist_t *ml,
    ngx_str_t *raw)
{
    ngx_uint_t                          i, n;
    ngx_str_t                          *names;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    names = ml->raw.elts;
    mb = ml->list->elts;
    n = ml->raw.nelts;

    for (i = n; i > 0; i--) {
        if (names[i - 1].len == raw->len
            && ngx_memcmp(names[i - 1].data, raw->data, raw->len) == 0)
        {
            return &mb[i - 1];
        }
    }

    return NULL;
}


/* name (MESSAGES n UNSEEN n UIDVALIDITY n UIDNEXT n HIGHESTMODSEQ n) */

static void
ngx_http_mail_plus_jmap_list_status(ngx_http_mail_plus_jmap_mblist_t *ml,
    ngx_mail_plus_imap_value_t *data)
{
    uint64_t                            n;
    ngx_str_t                           raw;
    ngx_uint_t                          i;
    ngx_mail_plus_imap_value_t         *items, *name;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    if (ngx_mail_plus_imap_string(ngx_mail_plus_imap_item(data, 0), &raw)
        != NGX_OK)
    {
        return;
    }

    mb = ngx_http_mail_plus_jmap_list_raw(ml, &raw);
    items = ngx_mail_plus_imap_item(data, 1);

    if (mb == NULL) {
        return;
    }

    for (i = 0; (name = ngx_mail_plus_imap_item(items, i)); i += 2) {

        if (ngx_mail_plus_imap_number(ngx_mail_plus_imap_item(items, i + 1),
                                      &n)
            != NGX_OK)
        {
            continue;
        }

        if (ngx_mail_plus_imap_atom_is(name, "MESSAGES", 8)) {
            mb->total = n;

        } else if (ngx_mail_plus_imap_atom_is(name, "UNSEEN", 6)) {
            mb->unread = n;

        } else if (ngx_mail_plus_imap_atom_is(name, "UIDVALIDITY", 11)) {
            mb->uidvalidity = n;

        } else if (ngx_mail_plus_imap_atom_is(name, "UIDNEXT", 7)) {
            mb->uidnext = n;

        } else if (ngx_mail_plus_imap_atom_is(name, "HIGHESTMODSEQ", 13)) {
            mb->highestmodseq = n;
        }
    }
}


static void
ngx_http_mail_plus_jmap_list_handler(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_mail_plus_imap_t              *imap;
    ngx_mail_plus_imap_cmd_t          *lsub;
    ngx_http_mail_plus_jmap_mblist_t  *ml;

    ml = cmd->data;
    imap = cmd->imap;

    if (cmd->rc != NGX_OK || cmd->status != NGX_MAIL_PLUS_IMAP_OK) {
        ml->call->description = ngx_http_mail_plus_jmap_list_fail(cmd);
        ml->failed = 1;
        ngx_http_mail_plus_jmap_list_done(ml);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, imap->log, 0,
                   "http jmap: %ui mailboxes listed", ml->list->nelts);

    if (imap->list_status) {
        ngx_http_mail_plus_jmap_list_done(ml);
        return;
    }

    /* LSUB for the subscriptions, then STATUS of each */

    lsub = ngx_mail_plus_imap_cmd(imap, cmd->pool);

    if (lsub == NULL
        || ngx_mail_plus_imap_cmd_text(lsub, "LSUB \"\" \"*\"") != NGX_OK)
    {
        ml->failed = 1;
        ngx_http_mail_plus_jmap_list_done(ml);
        return;
    }

    lsub->untagged_handler = ngx_http_mail_plus_jmap_list_untagged;
    lsub->handler = ngx_http_mail_plus_jmap_status_handler;
    lsub->data = ml;
    ml->pending = 1;

    if (ngx_mail_plus_imap_send(lsub) != NGX_OK
        || ngx_http_mail_plus_jmap_list_statuses(ml, imap) != NGX_OK)
    {
        /* the handlers of those queued are called all the same */
        ml->failed = 1;
    }
}


static ngx_int_t
ngx_http_mail_plus_jmap_list_statuses(ngx_http_mail_plus_jmap_mblist_t *ml,
    ngx_mail_plus_imap_t *imap)
{
    ngx_str_t                          *raw;
    ngx_uint_t                          i;
    ngx_mail_plus_imap_cmd_t           *cmd;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    mb = ml->list->elts;
    raw = ml->raw.elts;

    for (i = 0; i < ml->list->nelts; i++) {

        if (mb[i].noselect) {
            continue;
        }

        cmd = ngx_mail_plus_imap_cmd(imap, ml->call->request->pool);

        if (cmd == NULL
            || ngx_mail_plus_imap_cmd_text(cmd, "STATUS ") != NGX_OK
            || ngx_mail_plus_imap_cmd_string(cmd, &raw[i]) != NGX_OK
            || ngx_mail_plus_imap_cmd_text(cmd, " (MESSAGES UNSEEN "
                                           "UIDVALIDITY UIDNEXT%s)",
                                           imap->condstore
                                           ? " HIGHESTMODSEQ" : "")
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        cmd->untagged_handler = ngx_http_mail_plus_jmap_list_untagged;
        cmd->handler = ngx_http_mail_plus_jmap_status_handler;
        cmd->data = ml;

        if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
            return NGX_ERROR;
        }

        ml->pending++;
    }

    return NGX_OK;
}


/* LSUB's or a STATUS's answer: a NO (the mailbox went) leaves zeros */

static void
ngx_http_mail_plus_jmap_status_handler(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_http_mail_plus_jmap_mblist_t  *ml;

    ml = cmd->data;

    if (cmd->rc != NGX_OK && !ml->failed) {
        ml->call->description = ngx_http_mail_plus_jmap_list_fail(cmd);
        ml->failed = 1;
    }

    if (--ml->pending == 0) {
        ngx_http_mail_plus_jmap_list_done(ml);
    }
}


static void
ngx_http_mail_plus_jmap_list_done(ngx_http_mail_plus_jmap_mblist_t *ml)
{
    ngx_http_mail_plus_jmap_call_t  *call;

    call = ml->call;

    if (ml->failed) {
        call->error = "serverFail";
        call->ctx->mailboxes = NULL;

    } else {
        ngx_http_mail_plus_jmap_list_tree(ml->list);
        call->ctx->mailboxes = ml->list;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap: mailbox list done, failed %ui",
                   (ngx_uint_t) ml->failed);

    ml->handler(call);
}


/* the parents: the nearest listed mailbox above each */

static void
ngx_http_mail_plus_jmap_list_tree(ngx_array_t *list)
{
    size_t                              len;
    ngx_uint_t                          i, j;
    ngx_http_mail_plus_jmap_mailbox_t  *mb, *m, *p;

    mb = list->elts;

    for (i = 0; i < list->nelts; i++) {
        m = &mb[i];

        /* a role is one mailbox's: the first listed */

        for (j = 0; m->role && j < i; j++) {
            if (mb[j].role && ngx_strcmp(mb[j].role, m->role) == 0) {
                m->role = NULL;
            }
        }

        if (m->delimiter == 0) {
            continue;
        }

        for (len = m->path.len - 1; len > 0; len--) {

            if (m->path.data[len] != m->delimiter) {
                continue;
            }

            for (j = 0; j < list->nelts; j++) {
                p = &mb[j];

                if (j != i && p->path.len == len
                    && ngx_memcmp(p->path.data, m->path.data, len) == 0)
                {
                    m->parent = j;
                    break;
                }
            }

            if (m->parent >= 0) {
                m->name.data = m->path.data + len + 1;
                m->name.len = m->path.len - len - 1;
                break;
            }
        }
    }
}


static const char *
ngx_http_mail_plus_jmap_list_fail(ngx_mail_plus_imap_cmd_t *cmd)
{
    if (cmd->rc != NGX_OK) {
        return cmd->imap->error ? cmd->imap->error
                                : "the backend session failed";
    }

    return "the backend refused to list the mailboxes";
}


ngx_http_mail_plus_jmap_mailbox_t *
ngx_http_mail_plus_jmap_mailbox_find(ngx_array_t *mailboxes, u_char *id)
{
    ngx_uint_t                          i;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    if (mailboxes == NULL) {
        return NULL;
    }

    mb = mailboxes->elts;

    for (i = 0; i < mailboxes->nelts; i++) {
        if (ngx_strncmp(mb[i].id, id, 17) == 0) {
            return &mb[i];
        }
    }

    return NULL;
}


void
ngx_http_mail_plus_jmap_mbstate_set(ngx_http_mail_plus_jmap_mbstate_t *st,
    ngx_http_mail_plus_jmap_mailbox_t *mb)
{
    ngx_memcpy(st->id, mb->id, 17);
    st->uidvalidity = mb->uidvalidity;
    st->uidnext = mb->uidnext;
    st->highestmodseq = mb->highestmodseq;
    st->total = mb->total;
}


ngx_uint_t
ngx_http_mail_plus_jmap_mbstate_same(ngx_http_mail_plus_jmap_mbstate_t *st,
    ngx_http_mail_plus_jmap_mailbox_t *mb)
{
    return mb->highestmodseq != 0
           && ngx_memcmp(st->id, mb->id, 17) == 0
           && st->uidvalidity == mb->uidvalidity
           && st->uidnext == mb->uidnext
           && st->highestmodseq == mb->highestmodseq
           && st->total == mb->total;
}


ngx_http_mail_plus_jmap_mailbox_t *
ngx_http_mail_plus_jmap_mailbox_role(ngx_array_t *mailboxes,
    const char *role)
{
    ngx_uint_t                          i;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    if (mailboxes == NULL) {
        return NULL;
    }

    mb = mailboxes->elts;

    for (i = 0; i < mailboxes->nelts; i++) {
        if (mb[i].role && ngx_strcmp(mb[i].role, role) == 0) {
            return &mb[i];
        }
    }

    return NULL;
}


/* Mailbox/get (RFC 8621, section 2.1) */

static ngx_int_t
ngx_http_mail_plus_jmap_mailbox_get(ngx_http_mail_plus_jmap_call_t *call)
{
    size_t                               i;
    json_t                              *ids, *props, *v;
    ngx_int_t                            rc;
    const char                         **known;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    jlcf = ngx_http_get_module_loc_conf(call->request,
                                        ngx_http_mail_plus_jmap_module);

    ids = json_object_get(call->args, "ids");
    props = json_object_get(call->args, "properties");

    if (ids && !json_is_null(ids)) {
        if (!json_is_array(ids)) {
            goto invalid;
        }

        if (json_array_size(ids) > jlcf->max_objects_in_get) {
            call->error = "requestTooLarge";
            return NGX_OK;
        }

        json_array_foreach(ids, i, v) {
            if (!json_is_string(v)) {
                goto invalid;
            }
        }
    }

    if (props && !json_is_null(props)) {
        if (!json_is_array(props)) {
            goto invalid;
        }

        json_array_foreach(props, i, v) {
            if (!json_is_string(v)) {
                goto invalid;
            }

            for (known = ngx_http_mail_plus_jmap_mailbox_properties;
                 *known;
                 known++)
            {
                if (ngx_strcmp(*known, json_string_value(v)) == 0) {
                    break;
                }
            }

            if (*known == NULL) {
                goto invalid;
            }
        }
    }

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                        ngx_http_mail_plus_jmap_mailbox_got);

    if (rc == NGX_OK) {
        return ngx_http_mail_plus_jmap_mailbox_answer(call);
    }

    return rc;

invalid:

    call->error = "invalidArguments";
    call->description = "\"ids\" and \"properties\" are null or arrays of "
                        "strings, the properties those of a Mailbox";

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_mailbox_got(ngx_http_mail_plus_jmap_call_t *call)
{
    if (call->ctx->mailboxes
        && ngx_http_mail_plus_jmap_mailbox_answer(call) != NGX_OK)
    {
        call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(call);
}


static ngx_int_t
ngx_http_mail_plus_jmap_mailbox_answer(ngx_http_mail_plus_jmap_call_t *call)
{
    u_char                              state[18], id[17];
    size_t                              i;
    json_t                             *ids, *props, *list, *not_found, *v;
    json_t                             *result;
    ngx_uint_t                          j;
    const char                         *s;
    ngx_array_t                        *mailboxes;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    mailboxes = call->ctx->mailboxes;

    ids = json_object_get(call->args, "ids");
    props = json_object_get(call->args, "properties");

    if (props && !json_is_array(props)) {
        props = NULL;
    }

    list = json_array();
    not_found = json_array();

    if (list == NULL || not_found == NULL) {
        goto failed;
    }

    if (ids == NULL || json_is_null(ids)) {
        mb = mailboxes->elts;

        for (j = 0; j < mailboxes->nelts; j++) {
            v = ngx_http_mail_plus_jmap_mailbox_json(&mb[j], mailboxes, props);

            if (v == NULL || json_array_append_new(list, v) != 0) {
                goto failed;
            }
        }

    } else {
        json_array_foreach(ids, i, v) {
            s = ngx_http_mail_plus_jmap_id(call->ctx, json_string_value(v));
            mb = NULL;

            if (s && ngx_strlen(s) == 17) {
                ngx_memcpy(id, s, 17);
                mb = ngx_http_mail_plus_jmap_mailbox_find(mailboxes, id);
            }

            if (mb == NULL) {
                if (json_array_append(not_found, v) != 0) {
                    goto failed;
                }

                continue;
            }

            v = ngx_http_mail_plus_jmap_mailbox_json(mb, mailboxes, props);

            if (v == NULL || json_array_append_new(list, v) != 0) {
                goto failed;
            }
        }
    }

    ngx_http_mail_plus_jmap_mailbox_state(mailboxes, state);

    result = json_pack("{s:s%, s:s#, s:o, s:o}",
                       "accountId", call->ctx->account_id.data,
                       call->ctx->account_id.len,
                       "state", state, (int) 17,
                       "list", list, "notFound", not_found);
    if (result == NULL) {
        return NGX_ERROR;
    }

    call->result = result;

    return NGX_OK;

failed:

    json_decref(list);
    json_decref(not_found);

    return NGX_ERROR;
}


static json_t *
ngx_http_mail_plus_jmap_mailbox_json(ngx_http_mail_plus_jmap_mailbox_t *mb,
    ngx_array_t *list, json_t *properties)
{
    json_t                             *o, *p, *v;
    size_t                              i;
    ngx_http_mail_plus_jmap_mailbox_t  *parent;

    parent = (mb->parent >= 0)
             ? (ngx_http_mail_plus_jmap_mailbox_t *) list->elts + mb->parent
             : NULL;

    o = json_pack("{s:s#, s:s%, s:o, s:o, s:i, s:I, s:I, s:I, s:I, s:o, "
                  "s:b}",
                  "id", mb->id, (int) 17,
                  "name", mb->name.data, mb->name.len,
                  "parentId", parent ? json_stringn((char *) parent->id, 17)
                                     : json_null(),
                  "role", mb->role ? json_string(mb->role) : json_null(),
                  "sortOrder", mb->role && ngx_strcmp(mb->role, "inbox") == 0
                               ? 1 : 10,
                  "totalEmails", (json_int_t) mb->total,
                  "unreadEmails", (json_int_t) mb->unread,
                  "totalThreads", (json_int_t) mb->total,
                  "unreadThreads", (json_int_t) mb->unread,
                  "myRights", ngx_http_mail_plus_jmap_mailbox_rights(mb),
                  "isSubscribed", (int) mb->subscribed);

    if (o == NULL || properties == NULL) {
        return o;
    }

    /* only those asked, and "id" always */

    p = json_object();
    if (p == NULL) {
        json_decref(o);
        return NULL;
    }

    if (json_object_set(p, "id", json_object_get(o, "id")) != 0) {
        goto failed;
    }

    json_array_foreach(properties, i, v) {
        if (json_object_set(p, json_string_value(v),
                            json_object_get(o, json_string_value(v)))
            != 0)
        {
            goto failed;
        }
    }

    json_decref(o);

    return p;

failed:

    json_decref(o);
    json_decref(p);

    return NULL;
}


/*
 * what the user may do: all but the items of a mailbox that cannot be
 * selected; INBOX cannot be deleted or renamed away (RFC 3501)
 */

static json_t *
ngx_http_mail_plus_jmap_mailbox_rights(ngx_http_mail_plus_jmap_mailbox_t *mb)
{
    int  items, inbox;

    items = !mb->noselect;
    inbox = mb->role && ngx_strcmp(mb->role, "inbox") == 0;

    return json_pack("{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b}",
                     "mayReadItems", items,
                     "mayAddItems", items,
                     "mayRemoveItems", items,
                     "maySetSeen", items,
                     "maySetKeywords", items,
                     "mayCreateChild", 1,
                     "mayRename", !inbox,
                     "mayDelete", !inbox,
                     "maySubmit", 1);
}


/* Mailbox/changes (RFC 8621, section 2.2) */

static ngx_int_t
ngx_http_mail_plus_jmap_mailbox_changes(ngx_http_mail_plus_jmap_call_t *call)
{
    json_t     *since, *max;
    ngx_int_t   rc;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    since = json_object_get(call->args, "sinceState");
    max = json_object_get(call->args, "maxChanges");

    if (!json_is_string(since)
        || (max && !json_is_null(max)
            && (!json_is_integer(max) || json_integer_value(max) < 1)))
    {
        call->error = "invalidArguments";
        call->description = "\"sinceState\" is a string, \"maxChanges\" "
                            "null or a positive integer";
        return NGX_OK;
    }

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                    ngx_http_mail_plus_jmap_mailbox_changed);

    if (rc == NGX_OK) {
        return ngx_http_mail_plus_jmap_mailbox_since(call);
    }

    return rc;
}


static void
ngx_http_mail_plus_jmap_mailbox_changed(ngx_http_mail_plus_jmap_call_t *call)
{
    if (call->ctx->mailboxes
        && ngx_http_mail_plus_jmap_mailbox_since(call) != NGX_OK)
    {
        call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(call);
}


static ngx_int_t
ngx_http_mail_plus_jmap_mailbox_since(ngx_http_mail_plus_jmap_call_t *call)
{
    u_char      state[18];
    const char  *since;

    ngx_http_mail_plus_jmap_mailbox_state(call->ctx->mailboxes, state);

    since = json_string_value(json_object_get(call->args, "sinceState"));

    if (ngx_strcmp(since, state) != 0) {
        call->error = "cannotCalculateChanges";
        call->description = "IMAP keeps no history of mailboxes: "
                            "get them all again";
        return NGX_OK;
    }

    call->result = json_pack("{s:s%, s:s, s:s, s:b, s:[], s:[], s:[], s:n}",
                             "accountId", call->ctx->account_id.data,
                             call->ctx->account_id.len,
                             "oldState", since,
                             "newState", state,
                             "hasMoreChanges", 0,
                             "created", "updated", "destroyed",
                             "updatedProperties");

    return call->result ? NGX_OK : NGX_ERROR;
}


/*
 * "S" and 16 hex digits: the MD5 of each mailbox's id, name, parent, role,
 * subscription and counts, in the list's order; NUL-terminated
 */

void
ngx_http_mail_plus_jmap_mailbox_state(ngx_array_t *list, u_char *state)
{
    u_char                              digest[16], buf[3 * NGX_INT64_LEN + 8];
    u_char                             *p;
    ngx_uint_t                          i;
    ngx_md5_t                           md5;
    ngx_http_mail_plus_jmap_mailbox_t  *mb;

    ngx_md5_init(&md5);

    mb = list->elts;

    for (i = 0; i < list->nelts; i++) {
        ngx_md5_update(&md5, mb[i].id, 17);
        ngx_md5_update(&md5, mb[i].name.data, mb[i].name.len);
        ngx_md5_update(&md5, "", 1);

        if (mb[i].role) {
            ngx_md5_update(&md5, mb[i].role, ngx_strlen(mb[i].role));
        }

        p = ngx_sprintf(buf, "%c%i %ui %uL %uL %uL%c", '\0', mb[i].parent,
                        (ngx_uint_t) mb[i].subscribed, mb[i].total,
                        mb[i].unread, mb[i].highestmodseq, '\0');

        ngx_md5_update(&md5, buf, p - buf);
    }

    ngx_md5_final(digest, &md5);

    state[0] = 'S';
    ngx_hex_dump(state + 1, digest, 8);
    state[17] = '\0';
}
