
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_dir_ldap.h"


/*
 * The LDAP source's replies: a bind's, and a search's entry read into
 * the request's answer (its fields, its password hash) or a bind as the
 * entry found with the user's password.  Every value is checked before
 * it is used: no control character, at most 1024 bytes.
 */


#if (NGX_MAIL_PLUS_LDAP)


static ngx_int_t ngx_mail_plus_dir_ldap_entries(
    ngx_mail_plus_dir_ldap_conn_t *lc, LDAPMessage *res);
static ngx_int_t ngx_mail_plus_dir_ldap_entry(
    ngx_mail_plus_dir_ldap_conn_t *lc, LDAPMessage *entry);
static ngx_int_t ngx_mail_plus_dir_ldap_value(ngx_mail_plus_dir_req_t *req,
    LDAP *ld, LDAPMessage *entry, char *attr, ngx_str_t *value);


/* a reply: NGX_AGAIN, the next step is sent; NGX_OK, answered */

ngx_int_t
ngx_mail_plus_dir_ldap_result(ngx_mail_plus_dir_ldap_conn_t *lc,
    LDAPMessage *res)
{
    int                       rc, code;
    ngx_mail_plus_dir_req_t  *req;

    req = lc->req;

    if (lc->step == NGX_MAIL_PLUS_LDAP_SEARCH) {
        return ngx_mail_plus_dir_ldap_entries(lc, res);
    }

    rc = ldap_parse_result(lc->ld, res, &code, NULL, NULL, NULL, NULL, 0);

    if (rc != LDAP_SUCCESS) {
        (void) ngx_mail_plus_dir_ldap_fail(lc, "cannot read a bind's reply",
                                           rc);
        return NGX_OK;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: ldap: connection %ui: step %ui answered %d",
                   lc->index, lc->step, code);

    if (lc->step == NGX_MAIL_PLUS_LDAP_BIND) {

        if (code != LDAP_SUCCESS) {
            (void) ngx_mail_plus_dir_ldap_fail(lc,
                                               "the bind as bind_dn failed",
                                               code);
            return NGX_OK;
        }

        ngx_mail_plus_dir_state(lc->ctx->dir, 1, NULL, req->log);

        lc->bound = 1;

        if (ngx_mail_plus_dir_ldap_send(lc, NGX_MAIL_PLUS_LDAP_SEARCH)
            != NGX_OK)
        {
            return NGX_OK;
        }

        return NGX_AGAIN;
    }

    /* NGX_MAIL_PLUS_LDAP_USER */

    ngx_mail_plus_dir_state(lc->ctx->dir, 1, NULL, req->log);

    if (code == LDAP_SUCCESS) {
        req->result = NGX_MAIL_PLUS_DIR_FOUND;
        req->verified = 1;

    } else if (code == LDAP_INVALID_CREDENTIALS) {
        req->result = NGX_MAIL_PLUS_DIR_REFUSED;

    } else {
        req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        req->error.data = (u_char *) ldap_err2string(code);
        req->error.len = ngx_strlen(req->error.data);
    }

    return NGX_OK;
}


/* a search's entries and result */

static ngx_int_t
ngx_mail_plus_dir_ldap_entries(ngx_mail_plus_dir_ldap_conn_t *lc,
    LDAPMessage *res)
{
    int                       code, rc;
    ngx_uint_t                n;
    LDAPMessage              *msg, *entry;
    ngx_mail_plus_dir_req_t  *req;

    req = lc->req;

    n = 0;
    entry = NULL;
    code = LDAP_OTHER;

    for (msg = ldap_first_message(lc->ld, res);
         msg;
         msg = ldap_next_message(lc->ld, msg))
    {
        switch (ldap_msgtype(msg)) {

        case LDAP_RES_SEARCH_ENTRY:
            if (n++ == 0) {
                entry = msg;
            }
            break;

        case LDAP_RES_SEARCH_RESULT:
            rc = ldap_parse_result(lc->ld, msg, &code, NULL, NULL, NULL,
                                   NULL, 0);
            if (rc != LDAP_SUCCESS) {
                code = rc;
            }
            break;

        default: /* references */
            break;
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: ldap: connection %ui: search answered %d, "
                   "%ui entries", lc->index, code, n);

    if (n > 1) {
        ngx_mail_plus_dir_state(lc->ctx->dir, 1, NULL, req->log);
        req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;
        ngx_str_set(&req->error, "the filter found more than one entry");
        return NGX_OK;
    }

    if (code != LDAP_SUCCESS) {
        (void) ngx_mail_plus_dir_ldap_fail(lc, "the search failed", code);
        return NGX_OK;
    }

    ngx_mail_plus_dir_state(lc->ctx->dir, 1, NULL, req->log);

    if (n == 0) {
        req->result = NGX_MAIL_PLUS_DIR_UNKNOWN;
        return NGX_OK;
    }

    return ngx_mail_plus_dir_ldap_entry(lc, entry);
}


/* the one entry found: its fields, its password or a bind as it */

static ngx_int_t
ngx_mail_plus_dir_ldap_entry(ngx_mail_plus_dir_ldap_conn_t *lc,
    LDAPMessage *entry)
{
    char                            *dn;
    size_t                           len;
    ngx_str_t                        value;
    ngx_uint_t                       i;
    ngx_mail_plus_dir_req_t         *req;
    ngx_mail_plus_dir_ldap_req_t    *lr;
    ngx_mail_plus_dir_ldap_conf_t   *lcf;
    ngx_mail_plus_dir_ldap_field_t  *field;

    req = lc->req;
    lr = req->ctx;
    lcf = lc->ctx->conf;

    req->result = NGX_MAIL_PLUS_DIR_TEMPFAIL;

    field = lcf->fields.elts;

    for (i = 0; i < lcf->fields.nelts; i++) {

        switch (ngx_mail_plus_dir_ldap_value(req, lc->ld, entry,
                                             field[i].attr, &value))
        {
        case NGX_OK:
            break;

        case NGX_DECLINED:
            continue;

        default:
            return NGX_OK;
        }

        if (ngx_mail_plus_user_field(&req->fields, &field[i].name, &value)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, req->log, 0,
                          "directory \"%V\": the value of \"%s\" for "
                          "\"%V\" is not a valid \"%V\"", &req->dir->name,
                          field[i].attr, &req->login, &field[i].name);
            ngx_str_set(&req->error, "an invalid field");
            return NGX_OK;
        }
    }

    if (req->type == NGX_MAIL_PLUS_DIR_USERDB) {
        req->result = NGX_MAIL_PLUS_DIR_FOUND;
        return NGX_OK;
    }

    if (lcf->password) {
        if (ngx_mail_plus_dir_ldap_value(req, lc->ld, entry, lcf->password,
                                         &req->hash)
            == NGX_ERROR)
        {
            return NGX_OK;
        }

        req->result = NGX_MAIL_PLUS_DIR_FOUND;
        return NGX_OK;
    }

    /* "password bind" */

    dn = ldap_get_dn(lc->ld, entry);
    if (dn == NULL) {
        ngx_str_set(&req->error, "the entry has no DN");
        return NGX_OK;
    }

    len = ngx_strlen(dn);

    lr->dn = ngx_pnalloc(req->pool, len + 1);
    if (lr->dn == NULL) {
        ldap_memfree(dn);
        ngx_str_set(&req->error, "no memory");
        return NGX_OK;
    }

    ngx_memcpy(lr->dn, dn, len + 1);
    ldap_memfree(dn);

    if (ngx_mail_plus_dir_ldap_send(lc, NGX_MAIL_PLUS_LDAP_USER) != NGX_OK) {
        return NGX_OK;
    }

    return NGX_AGAIN;
}


/*
 * the first value of an attribute, checked, in the request's pool:
 * NGX_OK; NGX_DECLINED, the entry has none; NGX_ERROR, req->error set
 */

static ngx_int_t
ngx_mail_plus_dir_ldap_value(ngx_mail_plus_dir_req_t *req, LDAP *ld,
    LDAPMessage *entry, char *attr, ngx_str_t *value)
{
    u_char          *p, *last;
    struct berval  **vals;

    vals = ldap_get_values_len(ld, entry, attr);

    if (vals == NULL || vals[0] == NULL) {
        if (vals) {
            ldap_value_free_len(vals);
        }

        value->len = 0;
        return NGX_DECLINED;
    }

    p = (u_char *) vals[0]->bv_val;
    last = p + vals[0]->bv_len;

    if (vals[0]->bv_len > 1024) {
        goto invalid;
    }

    for ( /* void */ ; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            goto invalid;
        }
    }

    value->len = vals[0]->bv_len;
    value->data = ngx_pnalloc(req->pool, value->len);

    if (value->data == NULL) {
        ldap_value_free_len(vals);
        ngx_str_set(&req->error, "no memory");
        return NGX_ERROR;
    }

    ngx_memcpy(value->data, vals[0]->bv_val, value->len);
    ldap_value_free_len(vals);

    return NGX_OK;

invalid:

    ldap_value_free_len(vals);

    ngx_log_error(NGX_LOG_ERR, req->log, 0,
                  "directory \"%V\": the value of \"%s\" for \"%V\" has "
                  "a control character or is too long", &req->dir->name,
                  attr, &req->login);

    ngx_str_set(&req->error, "an invalid attribute value");

    return NGX_ERROR;
}

#endif
