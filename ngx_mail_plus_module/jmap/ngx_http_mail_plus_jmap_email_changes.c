
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Email/changes (RFC 8620, section 5.2) from CONDSTORE and QRESYNC (RFC
 * 7162).  The Email state (ngx_http_mail_plus_jmap_ids.c) keeps each
 * selectable mailbox's id, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ; for
 * each mailbox of the client's state that changed since, EXAMINE and
 *
 *     UID FETCH 1:* (UID) (CHANGEDSINCE <modseq> VANISHED)
 *
 * tell what: a UID at or over the old UIDNEXT is "created", any other
 * "updated", a UID VANISHED under the old UIDNEXT "destroyed".  A mailbox
 * of the state that is gone, or has another UIDVALIDITY, or a backend
 * without CONDSTORE: "cannotCalculateChanges".  A mailbox that is new:
 * all its messages "created".
 *
 * maxChanges (and our own bound) is kept mailbox by mailbox: the changes
 * of the mailboxes that fit are answered with "hasMoreChanges" and an
 * intermediate state (the others' old entries); a client asks again from
 * it.  A first mailbox whose changes alone exceed the bound cannot be
 * split (a modseq may be shared by any number of messages, VANISHED has
 * none): "cannotCalculateChanges".
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_CHANGES_MAX  50000


typedef struct {
    ngx_uint_t                          mailbox;  /* index in the list */
    ngx_http_mail_plus_jmap_since_t    *since;    /* NULL: a new one */
    unsigned                            done:1;
} ngx_http_mail_plus_jmap_echg_box_t;


typedef struct {
    ngx_http_mail_plus_jmap_call_t     *call;
    ngx_str_t                           old_state;
    ngx_array_t                        *since;
    ngx_array_t                        *mailboxes;
    ngx_uint_t                          max;
    ngx_uint_t                          count;
    ngx_uint_t                          more;

    ngx_array_t                         boxes;    /* of echg_box */
    ngx_uint_t                          box;
    ngx_uint_t                          examined;

    ngx_array_t                         uids;     /* of uint64_t, the box's
                                                     created and updated */
    ngx_array_t                         vanished; /* of ngx_mail_plus_imap_
                                                     range_t */
    ngx_uint_t                          bad;      /* a response not read */

    json_t                             *created;
    json_t                             *updated;
    json_t                             *destroyed;
} ngx_http_mail_plus_jmap_echg_t;


static ngx_int_t ngx_http_mail_plus_jmap_email_changes_handler(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_echg_listed(
    ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_echg_start(
    ngx_http_mail_plus_jmap_echg_t *st);
static ngx_int_t ngx_http_mail_plus_jmap_echg_add_box(
    ngx_http_mail_plus_jmap_echg_t *st, ngx_uint_t mailbox,
    ngx_http_mail_plus_jmap_since_t *since);
static ngx_int_t ngx_http_mail_plus_jmap_echg_next(
    ngx_http_mail_plus_jmap_echg_t *st);
static void ngx_http_mail_plus_jmap_echg_handler(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_echg_untagged(
    ngx_mail_plus_imap_cmd_t *cmd, ngx_mail_plus_imap_response_t *resp);
static ngx_int_t ngx_http_mail_plus_jmap_echg_take(
    ngx_http_mail_plus_jmap_echg_t *st);
static ngx_int_t ngx_http_mail_plus_jmap_echg_id(
    ngx_http_mail_plus_jmap_echg_t *st, json_t *list, uint64_t uid);
static ngx_int_t ngx_http_mail_plus_jmap_echg_answer(
    ngx_http_mail_plus_jmap_echg_t *st);
static ngx_int_t ngx_http_mail_plus_jmap_echg_cannot(
    ngx_http_mail_plus_jmap_echg_t *st, const char *why);
static void ngx_http_mail_plus_jmap_echg_cleanup(void *data);


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_email_changes[] = {
    { "Email/changes", NGX_HTTP_MAIL_PLUS_JMAP_MAIL,
      ngx_http_mail_plus_jmap_email_changes_handler },
    { NULL, 0, NULL }
};


static ngx_int_t
ngx_http_mail_plus_jmap_email_changes_handler(
    ngx_http_mail_plus_jmap_call_t *call)
{
    json_t                          *v;
    ngx_int_t                        rc;
    json_int_t                       max;
    ngx_pool_cleanup_t              *cln;
    ngx_http_mail_plus_jmap_echg_t  *st;

    if (ngx_http_mail_plus_jmap_account(call) != NGX_OK) {
        return NGX_OK;
    }

    v = json_object_get(call->args, "maxChanges");
    max = 0;

    if (v && !json_is_null(v)) {
        max = json_integer_value(v);

        if (!json_is_integer(v) || max <= 0) {
            call->error = "invalidArguments";
            call->description = "maxChanges must be a positive integer";
            return NGX_OK;
        }
    }

    v = json_object_get(call->args, "sinceState");

    if (!json_is_string(v)) {
        call->error = "invalidArguments";
        call->description = "sinceState must be a string";
        return NGX_OK;
    }

    st = ngx_pcalloc(call->request->pool,
                     sizeof(ngx_http_mail_plus_jmap_echg_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(call->request->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_mail_plus_jmap_echg_cleanup;
    cln->data = st;

    st->call = call;
    call->data = st;

    st->created = json_array();
    st->updated = json_array();
    st->destroyed = json_array();

    if (st->created == NULL || st->updated == NULL || st->destroyed == NULL) {
        return NGX_ERROR;
    }

    st->max = NGX_HTTP_MAIL_PLUS_JMAP_CHANGES_MAX;

    if (max && (uint64_t) max < st->max) {
        st->max = (ngx_uint_t) max;
    }

    st->old_state.data = (u_char *) json_string_value(v);
    st->old_state.len = json_string_length(v);

    rc = ngx_http_mail_plus_jmap_email_since(call->request->pool,
                                             &st->old_state, &st->since);
    if (rc == NGX_DECLINED) {
        return ngx_http_mail_plus_jmap_echg_cannot(st, "not a state of ours");
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "jmap email changes: %ui mailboxes in the state, max %ui",
                   st->since->nelts, st->max);

    rc = ngx_http_mail_plus_jmap_mailboxes(call,
                                           ngx_http_mail_plus_jmap_echg_listed);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_mail_plus_jmap_echg_start(st);
}


static void
ngx_http_mail_plus_jmap_echg_listed(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                        rc;
    ngx_http_mail_plus_jmap_echg_t  *st;

    st = call->data;

    rc = call->ctx->mailboxes ? ngx_http_mail_plus_jmap_echg_start(st)
                              : NGX_OK;

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc != NGX_OK && call->error == NULL) {
        call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(call);
}


/* the list known: the mailboxes to ask, or why it cannot be told */

static ngx_int_t
ngx_http_mail_plus_jmap_echg_start(ngx_http_mail_plus_jmap_echg_t *st)
{
    u_char                              id[17];
    ngx_uint_t                          i, j, n;
    ngx_mail_plus_imap_t               *imap;
    ngx_http_mail_plus_jmap_since_t    *s;
    ngx_http_mail_plus_jmap_mailbox_t  *mb, *found;

    st->mailboxes = st->call->ctx->mailboxes;

    imap = ngx_http_mail_plus_jmap_imap(st->call->ctx);
    if (imap == NULL) {
        return NGX_ERROR;
    }

    if (!imap->condstore) {
        return ngx_http_mail_plus_jmap_echg_cannot(st,
                                               "the backend has no CONDSTORE");
    }

    if (ngx_array_init(&st->boxes, st->call->request->pool, 4,
                       sizeof(ngx_http_mail_plus_jmap_echg_box_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s = st->since->elts;
    mb = st->mailboxes->elts;
    n = st->mailboxes->nelts;

    for (i = 0; i < st->since->nelts; i++) {
        id[0] = 'M';
        ngx_memcpy(id + 1, s[i].mailbox, 16);

        found = ngx_http_mail_plus_jmap_mailbox_find(st->mailboxes, id);

        if (found == NULL || found->noselect
            || found->uidvalidity != s[i].uidvalidity
            || found->highestmodseq == 0)
        {
            return ngx_http_mail_plus_jmap_echg_cannot(st,
                          "a mailbox of the state is gone or was recreated");
        }

        if (found->uidnext == s[i].uidnext
            && found->highestmodseq == s[i].highestmodseq)
        {
            continue;
        }

        if (ngx_http_mail_plus_jmap_echg_add_box(st, found - mb, &s[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* the mailboxes new since: all theirs created */

    for (j = 0; j < n; j++) {
        if (mb[j].noselect) {
            continue;
        }

        for (i = 0; i < st->since->nelts; i++) {
            if (ngx_strncmp(mb[j].id + 1, s[i].mailbox, 16) == 0) {
                break;
            }
        }

        if (i == st->since->nelts && mb[j].total
            && ngx_http_mail_plus_jmap_echg_add_box(st, j, NULL) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email changes: %ui mailboxes to ask",
                   st->boxes.nelts);

    st->box = 0;
    st->examined = 0;

    return ngx_http_mail_plus_jmap_echg_next(st);
}


static ngx_int_t
ngx_http_mail_plus_jmap_echg_add_box(ngx_http_mail_plus_jmap_echg_t *st,
    ngx_uint_t mailbox, ngx_http_mail_plus_jmap_since_t *since)
{
    ngx_http_mail_plus_jmap_echg_box_t  *b;

    b = ngx_array_push(&st->boxes);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->mailbox = mailbox;
    b->since = since;
    b->done = 0;

    return NGX_OK;
}


/* the box at hand: EXAMINE, then its FETCH; or the answer */

static ngx_int_t
ngx_http_mail_plus_jmap_echg_next(ngx_http_mail_plus_jmap_echg_t *st)
{
    ngx_int_t                            rc;
    ngx_mail_plus_imap_cmd_t            *cmd;
    ngx_http_mail_plus_jmap_echg_box_t  *b;
    ngx_http_mail_plus_jmap_mailbox_t   *mb;

    if (st->box == st->boxes.nelts || st->more) {
        return ngx_http_mail_plus_jmap_echg_answer(st);
    }

    b = (ngx_http_mail_plus_jmap_echg_box_t *) st->boxes.elts + st->box;
    mb = (ngx_http_mail_plus_jmap_mailbox_t *) st->mailboxes->elts
         + b->mailbox;

    cmd = ngx_mail_plus_imap_cmd(st->call->ctx->imap, st->call->request->pool);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    cmd->handler = ngx_http_mail_plus_jmap_echg_handler;
    cmd->data = st;

    if (!st->examined) {
        rc = ngx_mail_plus_imap_cmd_text(cmd, "EXAMINE ");
        if (rc == NGX_OK) {
            rc = ngx_mail_plus_imap_cmd_mailbox(cmd, &mb->path);
        }

    } else {
        cmd->untagged_handler = ngx_http_mail_plus_jmap_echg_untagged;

        if (ngx_array_init(&st->uids, st->call->request->pool, 16,
                           sizeof(uint64_t))
            != NGX_OK
            || ngx_array_init(&st->vanished, st->call->request->pool, 4,
                              sizeof(ngx_mail_plus_imap_range_t))
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        st->bad = 0;

        rc = b->since
             ? ngx_mail_plus_imap_cmd_text(cmd, "UID FETCH 1:* (UID) "
                                           "(CHANGEDSINCE %uL VANISHED)",
                                           b->since->highestmodseq)
             : ngx_mail_plus_imap_cmd_text(cmd, "UID FETCH 1:* (UID)");
    }

    if (rc != NGX_OK || ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email changes: %s %s",
                   st->examined ? "fetch" : "examine", mb->id);

    return NGX_AGAIN;
}


static void
ngx_http_mail_plus_jmap_echg_handler(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_int_t                        rc;
    ngx_http_mail_plus_jmap_echg_t  *st;

    st = cmd->data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email changes: reply %i %d, box %ui", cmd->rc,
                   (int) cmd->status, st->box);

    if (cmd->rc != NGX_OK) {
        st->call->error = "serverFail";
        st->call->description = cmd->imap->error;
        ngx_http_mail_plus_jmap_done(st->call);
        return;
    }

    if (cmd->status != NGX_MAIL_PLUS_IMAP_OK || st->bad) {
        rc = ngx_http_mail_plus_jmap_echg_cannot(st,
                                          "the backend did not tell changes");

    } else if (!st->examined) {
        st->examined = 1;
        rc = ngx_http_mail_plus_jmap_echg_next(st);

    } else {
        rc = ngx_http_mail_plus_jmap_echg_take(st);

        if (rc == NGX_OK && st->call->error == NULL) {
            st->examined = 0;
            st->box++;
            rc = ngx_http_mail_plus_jmap_echg_next(st);
        }
    }

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc != NGX_OK && st->call->error == NULL) {
        st->call->error = "serverFail";
    }

    ngx_http_mail_plus_jmap_done(st->call);
}


/* "* n FETCH (UID u MODSEQ (m))" and "* VANISHED [(EARLIER)] set" */

static ngx_int_t
ngx_http_mail_plus_jmap_echg_untagged(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_mail_plus_imap_response_t *resp)
{
    u_char                          *p, *last;
    uint64_t                         uid, *u;
    ngx_str_t                        set;
    ngx_uint_t                       i;
    ngx_mail_plus_imap_value_t      *list, *v;
    ngx_mail_plus_imap_range_t      *r;
    ngx_http_mail_plus_jmap_echg_t  *st;

    st = cmd->data;

    if (resp->status != NGX_MAIL_PLUS_IMAP_DATA) {
        return NGX_DECLINED;
    }

    if (resp->name.len == 5
        && ngx_strncasecmp(resp->name.data, (u_char *) "FETCH", 5) == 0)
    {
        list = ngx_mail_plus_imap_item(resp->data, 0);

        for (i = 0; list && i + 1 < list->nelts; i += 2) {
            if (ngx_mail_plus_imap_atom_is(ngx_mail_plus_imap_item(list, i),
                                           "UID", 3)
                && ngx_mail_plus_imap_number(
                       ngx_mail_plus_imap_item(list, i + 1), &uid)
                   == NGX_OK)
            {
                if (st->uids.nelts > st->max) {
                    st->bad = 1;
                    return NGX_OK;
                }

                u = ngx_array_push(&st->uids);
                if (u == NULL) {
                    return NGX_ERROR;
                }

                *u = uid;
                return NGX_OK;
            }
        }

        st->bad = 1;
        return NGX_OK;
    }

    if (resp->name.len == 8
        && ngx_strncasecmp(resp->name.data, (u_char *) "VANISHED", 8) == 0)
    {
        v = ngx_mail_plus_imap_item(resp->data, 0);

        if (v && v->type == NGX_MAIL_PLUS_IMAP_LIST) {
            v = ngx_mail_plus_imap_item(resp->data, 1);
        }

        if (ngx_mail_plus_imap_string(v, &set) != NGX_OK || set.len == 0) {
            st->bad = 1;
            return NGX_OK;
        }

        p = set.data;
        last = p + set.len;

        while (p && p < last) {
            if (st->vanished.nelts > st->max) {
                st->bad = 1;
                return NGX_OK;
            }

            r = ngx_array_push(&st->vanished);
            if (r == NULL) {
                return NGX_ERROR;
            }

            p = ngx_mail_plus_imap_uid_range(p, last, r);
        }

        if (p == NULL) {
            st->bad = 1;
        }

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * a box's changes taken if they fit: NGX_OK (taken, or not fitting after
 * others: st->more), or the answer "cannotCalculateChanges"
 */

static ngx_int_t
ngx_http_mail_plus_jmap_echg_take(ngx_http_mail_plus_jmap_echg_t *st)
{
    uint64_t                            *u, uid, n, next;
    ngx_uint_t                           i;
    ngx_mail_plus_imap_range_t          *r;
    ngx_http_mail_plus_jmap_echg_box_t  *b;

    b = (ngx_http_mail_plus_jmap_echg_box_t *) st->boxes.elts + st->box;
    next = b->since ? b->since->uidnext : 0;

    u = st->uids.elts;
    r = st->vanished.elts;
    n = st->uids.nelts;

    for (i = 0; i < st->vanished.nelts; i++) {
        if (r[i].first < next) {
            n += ngx_min(r[i].last, next - 1) - r[i].first + 1;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email changes: %uL changes in box %ui", n, st->box);

    if (n > st->max - st->count) {
        if (st->count == 0) {
            return ngx_http_mail_plus_jmap_echg_cannot(st,
                                     "more changes in a mailbox than allowed");
        }

        st->more = 1;
        return NGX_OK;
    }

    st->count += n;

    for (i = 0; i < st->uids.nelts; i++) {
        if (ngx_http_mail_plus_jmap_echg_id(st, u[i] >= next ? st->created
                                                             : st->updated,
                                            u[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < st->vanished.nelts; i++) {
        for (uid = r[i].first; uid <= r[i].last && uid < next; uid++) {
            if (ngx_http_mail_plus_jmap_echg_id(st, st->destroyed, uid)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    b->done = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_echg_id(ngx_http_mail_plus_jmap_echg_t *st,
    json_t *list, uint64_t uid)
{
    ngx_str_t                            id;
    ngx_http_mail_plus_jmap_ref_t        ref;
    ngx_http_mail_plus_jmap_echg_box_t  *b;
    ngx_http_mail_plus_jmap_mailbox_t   *mb;

    b = (ngx_http_mail_plus_jmap_echg_box_t *) st->boxes.elts + st->box;
    mb = (ngx_http_mail_plus_jmap_mailbox_t *) st->mailboxes->elts
         + b->mailbox;

    ngx_memcpy(ref.mailbox, mb->id + 1, 16);
    ref.uidvalidity = mb->uidvalidity;
    ref.uid = uid;
    ngx_str_null(&ref.part);

    if (ngx_http_mail_plus_jmap_ref_id(st->call->request->pool, 'E', &ref,
                                       &id)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return json_array_append_new(list, json_stringn((const char *) id.data,
                                                    id.len))
           == 0 ? NGX_OK : NGX_ERROR;
}


/*
 * the answer; its newState is the list's, or with more to come, the
 * list's entries of the boxes done and of those unchanged, and the old
 * entries of the others (new mailboxes not done are left out)
 */

static ngx_int_t
ngx_http_mail_plus_jmap_echg_answer(ngx_http_mail_plus_jmap_echg_t *st)
{
    json_t                              *res;
    ngx_str_t                            state;
    ngx_uint_t                           i, j;
    ngx_array_t                          part;
    ngx_http_mail_plus_jmap_ctx_t       *ctx;
    ngx_http_mail_plus_jmap_since_t     *s;
    ngx_http_mail_plus_jmap_mailbox_t   *mb, *p;
    ngx_http_mail_plus_jmap_echg_box_t  *b;

    ctx = st->call->ctx;
    mb = st->mailboxes->elts;
    b = st->boxes.elts;

    if (!st->more) {
        if (ngx_http_mail_plus_jmap_email_state(st->call->request->pool,
                                                st->mailboxes, &state)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        if (ngx_array_init(&part, st->call->request->pool,
                           st->mailboxes->nelts + 1,
                           sizeof(ngx_http_mail_plus_jmap_mailbox_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < st->mailboxes->nelts; i++) {
            if (mb[i].noselect) {
                continue;
            }

            for (j = 0; j < st->boxes.nelts; j++) {
                if (b[j].mailbox == i) {
                    break;
                }
            }

            if (j < st->boxes.nelts && !b[j].done && b[j].since == NULL) {
                continue;
            }

            p = ngx_array_push(&part);
            if (p == NULL) {
                return NGX_ERROR;
            }

            *p = mb[i];

            if (j < st->boxes.nelts && !b[j].done) {
                s = b[j].since;
                p->uidnext = s->uidnext;
                p->highestmodseq = s->highestmodseq;
            }
        }

        if (ngx_http_mail_plus_jmap_email_state(st->call->request->pool,
                                                &part, &state)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    res = json_pack("{ss#ss#ss#sbsOsOsO}",
                    "accountId", (const char *) ctx->account_id.data,
                    (int) ctx->account_id.len,
                    "oldState", (const char *) st->old_state.data,
                    (int) st->old_state.len,
                    "newState", (const char *) state.data, (int) state.len,
                    "hasMoreChanges", (int) st->more,
                    "created", st->created,
                    "updated", st->updated,
                    "destroyed", st->destroyed);
    if (res == NULL) {
        return NGX_ERROR;
    }

    st->call->result = res;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email changes: %uz created, %uz updated, "
                   "%uz destroyed, more: %ui",
                   json_array_size(st->created), json_array_size(st->updated),
                   json_array_size(st->destroyed), st->more);

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_echg_cannot(ngx_http_mail_plus_jmap_echg_t *st,
    const char *why)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, st->call->request->connection->log, 0,
                   "jmap email changes: cannot calculate: %s", why);

    st->call->error = "cannotCalculateChanges";
    st->call->description = why;

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_echg_cleanup(void *data)
{
    ngx_http_mail_plus_jmap_echg_t  *st = data;

    json_decref(st->created);
    json_decref(st->updated);
    json_decref(st->destroyed);
}
