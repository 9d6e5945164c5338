
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_delivery.h"


/*
 * The router's answers about a claimed message's local recipients, asked
 * before the message is planned when the router has directories
 * ("router_directory"): a directory may take time to answer, and its
 * answer must be the one RCPT had, not a bounce because the router's
 * users file does not know the recipient.  Each recipient's login check
 * is kept with it until the message is freed; the plan reads its route.
 * A directory that cannot answer defers the recipient (4.3.0).
 */


static void ngx_mail_plus_delivery_looked_up(ngx_mail_plus_check_t *check);


/*
 * NGX_OK: every answer is there; NGX_AGAIN: "plan" is called when the
 * last comes
 */

ngx_int_t
ngx_mail_plus_delivery_lookup(ngx_mail_plus_dmsg_t *msg,
    ngx_mail_plus_main_conf_t *mpcf, ngx_mail_plus_delivery_plan_pt plan)
{
    ngx_int_t               rc;
    ngx_uint_t              i;
    ngx_mail_plus_rcpt_t   *rcpt;
    ngx_mail_plus_check_t  *check;

    if (mpcf == NULL || mpcf->directories == NULL) {
        return NGX_OK;
    }

    msg->plan = plan;

    /* held while the checks are started */

    msg->lookups = 1;

    rcpt = msg->rcpts.elts;

    for (i = 0; i < msg->rcpts.nelts; i++) {

        if (rcpt[i].state != NGX_MAIL_PLUS_RCPT_PENDING
            || !ngx_mail_plus_delivery_rcpt_local(&rcpt[i]))
        {
            continue;
        }

        check = ngx_mail_plus_check_create(mpcf, msg->log);
        if (check == NULL) {
            continue;
        }

        rcpt[i].check = check;

        if (ngx_mail_plus_check_set_recipient(check, &rcpt[i].addr)
            != NGX_OK)
        {
            check->rc = NGX_ERROR;
            continue;
        }

        check->handler = ngx_mail_plus_delivery_looked_up;
        check->data = msg;

        rc = ngx_mail_plus_check_start(check);

        if (rc == NGX_AGAIN) {
            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                           "delivery %s: <%V> waits for a directory",
                           msg->id, &rcpt[i].addr);
            msg->lookups++;
            continue;
        }

        if (rc != NGX_OK) {
            check->rc = NGX_ERROR;
        }
    }

    if (--msg->lookups == 0) {
        return NGX_OK;
    }

    return NGX_AGAIN;
}


static void
ngx_mail_plus_delivery_looked_up(ngx_mail_plus_check_t *check)
{
    ngx_mail_plus_dmsg_t *msg = check->data;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, msg->log, 0,
                   "delivery %s: <%V> looked up, %i",
                   msg->id, &check->auth.login, check->rc);

    if (--msg->lookups == 0) {
        msg->plan(msg);
    }
}


/* the checks, when the message is freed; one still out only is marked */

void
ngx_mail_plus_delivery_lookup_free(ngx_mail_plus_dmsg_t *msg)
{
    ngx_uint_t             i;
    ngx_mail_plus_rcpt_t  *rcpt;

    rcpt = msg->rcpts.elts;

    for (i = 0; i < msg->rcpts.nelts; i++) {
        if (rcpt[i].check) {
            ngx_mail_plus_check_free(rcpt[i].check);
            rcpt[i].check = NULL;
        }
    }
}
