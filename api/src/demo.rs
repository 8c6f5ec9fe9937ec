//! `platform demo-seed`: three demo companies — a restaurant, a bike shop and a clinic — with an
//! admin, a member in each built-in role, a catalog, customers and orders spread over their
//! flows, created through the same services the API uses. Running it again changes nothing.
//!
//! Passwords are generated and printed, or taken from `PLATFORM_DEMO_PASSWORD` when set (for
//! scripts such as the benchmark). `--bulk-orders N` adds N orders to the restaurant with
//! batched inserts, for load tests.

use anyhow::Context;
use chrono::Utc;
use entity::{company, order, order_counter, order_item, order_status_history, product};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::OnConflict,
};
use uuid::Uuid;

use crate::{
    auth::{self, Actor, Principal, password, user_subject},
    db::tenant::{CompanyId, Intent, global},
    domain::{BusinessType, Currency, Email, Locale, Timezone, phone::Phone},
    rbac::built_in_roles,
    services::{
        catalog::{self, NewProduct, ProductKind},
        companies::{self, NewCompany},
        customers::{self, CustomerDetails},
        invitations::{self, NewAccount, NewInvitation},
        orders::{self, NewOrder, TransitionRequest},
        payments, users, workflows,
    },
    state::AppState,
};

struct Demo {
    name: &'static str,
    slug: &'static str,
    business_type: BusinessType,
    products: &'static [(&'static str, &'static str, i64, Option<i32>)],
    /// How far along the flow each seeded order goes (number of transitions from the start).
    progress: &'static [usize],
}

const DEMOS: [Demo; 3] = [
    Demo {
        name: "Cantina da Praça",
        slug: "demo-restaurant",
        business_type: BusinessType::Restaurant,
        products: &[
            ("PIZZA-MARG", "Pizza margherita", 4590, Some(200)),
            ("PIZZA-CAL", "Pizza calabresa", 4990, Some(200)),
            ("SUCO-LAR", "Suco de laranja", 990, None),
            ("PUDIM", "Pudim de leite", 1490, Some(40)),
        ],
        progress: &[0, 0, 1, 2, 2, 3, 4, 4],
    },
    Demo {
        name: "Pedal Certo Bicicletas",
        slug: "demo-bike-shop",
        business_type: BusinessType::BikeShop,
        products: &[
            ("REV-COMP", "Revisão completa", 18000, None),
            ("TROCA-PNEU", "Troca de pneu", 4500, None),
            ("PNEU-29", "Pneu aro 29", 15990, Some(30)),
            ("CORRENTE", "Corrente 12v", 21990, Some(15)),
        ],
        progress: &[0, 1, 2, 3, 4, 5],
    },
    Demo {
        name: "Clínica Bem Estar",
        slug: "demo-clinic",
        business_type: BusinessType::Clinic,
        products: &[
            ("CONSULTA", "Consulta clínica", 25000, None),
            ("RETORNO", "Retorno", 12000, None),
            ("EXAME-SANG", "Exame de sangue", 8000, None),
        ],
        progress: &[0, 1, 2, 3, 4, 4],
    },
];

const CUSTOMERS: [(&str, &str); 4] = [
    ("Ana Souza", "+5511987650001"),
    ("Bruno Lima", "+5521987650002"),
    ("Carla Dias", "+5531987650003"),
    ("Diego Alves", "+5541987650004"),
];

fn demo_password() -> String {
    std::env::var("PLATFORM_DEMO_PASSWORD")
        .ok()
        .filter(|password| !password.is_empty())
        .unwrap_or_else(|| auth::random_token(12))
}

fn message(error: crate::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!(error.message())
}

pub async fn seed(state: &AppState, bulk_orders: u64) -> anyhow::Result<()> {
    for demo in &DEMOS {
        seed_company(state, demo).await?;
    }
    if bulk_orders > 0 {
        let restaurant = global::find::<company::Entity>()
            .filter(company::Column::Slug.eq(DEMOS[0].slug))
            .one(&state.system_db)
            .await?
            .context("the demo restaurant is missing")?;
        bulk(state, CompanyId::from_row(restaurant.id), bulk_orders).await?;
        println!("added {bulk_orders} orders to {}", DEMOS[0].slug);
    }
    Ok(())
}

async fn seed_company(state: &AppState, demo: &Demo) -> anyhow::Result<()> {
    let existing = global::find::<company::Entity>()
        .filter(company::Column::Slug.eq(demo.slug))
        .one(&state.system_db)
        .await?;
    if existing.is_some() {
        println!("{} ({}) exists already", demo.name, demo.slug);
        return Ok(());
    }
    let password = demo_password();
    let admin_email = format!("admin@{}.example", demo.slug);
    let hash = password::hash(password.clone()).await.map_err(message)?;
    let txn = state
        .begin_for_company(CompanyId::new_company(), "demo seed", Intent::ChangeAccess)
        .await?;
    let admin = users::insert_user(
        &txn,
        &Email::parse(&admin_email).map_err(anyhow::Error::msg)?,
        "Admin",
        Some(hash),
        Locale::DEFAULT,
    )
    .await
    .map_err(message)?;
    let company = companies::create_with_admin(
        &txn,
        NewCompany {
            name: demo.name.into(),
            slug: crate::domain::Slug::parse(demo.slug).map_err(anyhow::Error::msg)?,
            business_type: demo.business_type,
            locale: Locale::DEFAULT,
            timezone: Timezone::parse(Timezone::DEFAULT).map_err(anyhow::Error::msg)?,
            currency: Currency::BRL,
        },
        admin.id,
    )
    .await
    .map_err(message)?;
    txn.commit().await?;

    let roles = state
        .rbac
        .roles_of(&user_subject(admin.id), company.id)
        .await;
    let actor = Actor::new(company.id, Principal::User(admin.id), roles, None);
    println!("\n{} ({})", demo.name, demo.slug);
    println!("  {admin_email:<40} ADMIN   password: {password}");
    for role in built_in_roles(demo.business_type.as_str())
        .iter()
        .filter(|role| role.name != crate::rbac::ADMIN)
    {
        let email = format!("{}@{}.example", role.name.to_lowercase(), demo.slug);
        let member_password = demo_password();
        // Members join as anyone does: invited, then accepting with the invitation's token.
        let invited = invitations::invite(
            state,
            &actor,
            NewInvitation {
                email: Email::parse(&email).map_err(anyhow::Error::msg)?,
                roles: vec![role.name.to_string()],
            },
        )
        .await
        .map_err(message)?;
        invitations::accept_with_token(
            state,
            NewAccount {
                token: invited.token,
                name: format!("{} member", role.name),
                password: member_password.clone(),
                locale: None,
            },
        )
        .await
        .map_err(message)?;
        println!("  {email:<40} {:<7} password: {member_password}", role.name);
    }

    let mut products = Vec::new();
    for (sku, name, price, stock) in demo.products {
        let created = catalog::create(
            state,
            &actor,
            NewProduct {
                sku: (*sku).into(),
                name: (*name).into(),
                kind: if stock.is_some() {
                    ProductKind::Product
                } else {
                    ProductKind::Service
                },
                price_minor: *price,
                track_stock: stock.is_some(),
                stock: *stock,
            },
        )
        .await
        .map_err(message)?;
        products.push(created.id);
    }
    let mut customer_ids = Vec::new();
    for (name, phone) in CUSTOMERS {
        let created = customers::create(
            state,
            &actor,
            CustomerDetails {
                name: Some(name.into()),
                phone: Some(Phone::parse(phone).map_err(anyhow::Error::msg)?),
                ..Default::default()
            },
        )
        .await
        .map_err(message)?;
        customer_ids.push(created.id);
    }

    payments::update_settings(
        state,
        &actor,
        payments::SettingsChanges {
            pix_key: Some(format!("pix@{}.example", demo.slug)),
            pix_merchant_name: Some(demo.name.chars().take(25).collect()),
            pix_merchant_city: Some("Sao Paulo".into()),
            boleto_bank_code: Some("341".into()),
            boleto_agency: Some("1234".into()),
            boleto_account: Some("5678901".into()),
            boleto_wallet: Some("9".into()),
            ..Default::default()
        },
    )
    .await
    .map_err(message)?;

    let txn = state.begin_for(&actor, Intent::Read).await?;
    let workflow = workflows::active(&txn, workflows::ORDER)
        .await
        .map_err(message)?;
    txn.commit().await?;
    let path = happy_path(&workflow.definition);
    for (index, steps) in demo.progress.iter().enumerate() {
        let items = vec![
            (products[index % products.len()], 1 + (index as i32 % 3)),
            (products[(index + 1) % products.len()], 1),
        ];
        let created = orders::create(
            state,
            &actor,
            NewOrder {
                customer_id: customer_ids[index % customer_ids.len()],
                items,
                notes: None,
            },
        )
        .await
        .map_err(message)?;
        for (from, to) in path.iter().zip(path.iter().skip(1)).take(*steps) {
            if workflow
                .definition
                .transitions
                .iter()
                .any(|step| &step.from == from && &step.to == to && step.requires_payment)
            {
                pay_in_cash(state, &actor, created.id).await?;
            }
            orders::transition(
                state,
                &actor,
                TransitionRequest {
                    order_id: created.id,
                    to: to.clone(),
                    comment: None,
                    expected_version: None,
                },
            )
            .await
            .map_err(message)?;
        }
    }
    println!(
        "  {} products, {} customers, {} orders",
        products.len(),
        customer_ids.len(),
        demo.progress.len()
    );
    Ok(())
}

/// The longest run of first transitions from the initial state that avoids cancelling.
fn happy_path(definition: &crate::domain::workflow::Definition) -> Vec<String> {
    let mut path = Vec::new();
    let mut current = definition.initial().map(|state| state.key.clone());
    while let Some(key) = current {
        path.push(key.clone());
        current = definition
            .transitions_from(&key)
            .find(|transition| {
                !definition
                    .state(&transition.to)
                    .is_some_and(|state| state.releases_stock)
                    && !path.contains(&transition.to)
            })
            .map(|transition| transition.to.clone());
    }
    path
}

/// Adds `count` orders (three items, three history rows each) with batched inserts.
async fn bulk(state: &AppState, company: CompanyId, count: u64) -> anyhow::Result<()> {
    const BATCH: u64 = 500;
    let txn = state
        .begin_for_company(company, "demo seed", Intent::Read)
        .await?;
    let products = txn.find::<product::Entity>().all(&txn).await?;
    let customers = txn.find::<entity::customer::Entity>().all(&txn).await?;
    let workflow = txn
        .find::<entity::workflow::Entity>()
        .filter(entity::workflow::Column::Active.eq(true))
        .one(&txn)
        .await?
        .context("the restaurant has no active workflow")?;
    txn.commit().await?;
    anyhow::ensure!(
        products.len() >= 3 && !customers.is_empty(),
        "seed the demo first"
    );
    let statuses = ["PENDING", "CONFIRMED", "PREPARING"];
    let mut done = 0;
    while done < count {
        let size = BATCH.min(count - done);
        let txn = state
            .begin_for_company(company, "demo seed", Intent::Write)
            .await?;
        order_counter::Entity::insert(order_counter::ActiveModel {
            company_id: Set(company.get()),
            last_number: Set(0),
        })
        .on_conflict_do_nothing_on([order_counter::Column::CompanyId])
        .exec(&txn)
        .await?;
        let last: i64 = txn
            .find::<order_counter::Entity>()
            .one(&txn)
            .await?
            .map(|counter| counter.last_number)
            .unwrap_or(0);
        let now = Utc::now();
        let mut orders = Vec::new();
        let mut items = Vec::new();
        let mut history = Vec::new();
        for offset in 0..size {
            let number = last + i64::try_from(offset).unwrap_or(0) + 1;
            let order_id = Uuid::now_v7();
            let mut total = 0;
            for position in 0..3usize {
                let product =
                    &products[(usize::try_from(number).unwrap_or(0) + position) % products.len()];
                let quantity = i32::try_from(position).unwrap_or(0) + 1;
                let line = product.price_minor * i64::from(quantity);
                total += line;
                items.push(order_item::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    order_id: Set(order_id),
                    product_id: Set(product.id),
                    position: Set(i32::try_from(position).unwrap_or(0)),
                    quantity: Set(quantity),
                    unit_price_minor: Set(product.price_minor),
                    line_total_minor: Set(line),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                });
            }
            for (index, to) in statuses.iter().enumerate() {
                history.push(order_status_history::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    order_id: Set(order_id),
                    from_status: Set(index
                        .checked_sub(1)
                        .map(|previous| statuses[previous].to_string())),
                    to_status: Set((*to).to_string()),
                    actor_user_id: Set(None),
                    actor_api_key_id: Set(None),
                    comment: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                });
            }
            orders.push(order::ActiveModel {
                id: Set(order_id),
                number: Set(number),
                customer_id: Set(
                    customers[usize::try_from(number).unwrap_or(0) % customers.len()].id,
                ),
                workflow_id: Set(workflow.id),
                status: Set("PREPARING".into()),
                version: Set(3),
                subtotal_minor: Set(total),
                total_minor: Set(total),
                currency: Set("BRL".into()),
                notes: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            });
        }
        txn.insert_many(orders).await?;
        for chunk in items.chunks(1000) {
            txn.insert_many(chunk.to_vec()).await?;
        }
        for chunk in history.chunks(1000) {
            txn.insert_many(chunk.to_vec()).await?;
        }
        order_counter::Entity::insert(order_counter::ActiveModel {
            company_id: Set(company.get()),
            last_number: Set(last + i64::try_from(size).unwrap_or(0)),
        })
        .on_conflict(
            OnConflict::column(order_counter::Column::CompanyId)
                .update_column(order_counter::Column::LastNumber)
                .to_owned(),
        )
        .exec(&txn)
        .await?;
        txn.commit().await?;
        done += size;
    }
    // The planner's statistics would otherwise still describe the tables before the load (and
    // autovacuum, which refreshes them, may be off): a nested loop over a join it believes
    // returns one row took 110 ms instead of 0.3 ms on PostgreSQL.
    state.db.execute_unprepared("ANALYZE").await?;
    Ok(())
}

/// Settles an order at the counter, as staff would before a step that requires payment.
async fn pay_in_cash(state: &AppState, actor: &Actor, order_id: Uuid) -> anyhow::Result<()> {
    let payment = payments::create(
        state,
        actor,
        payments::NewPayment {
            order_id,
            method: crate::domain::payment::Method::Cash,
            amount_minor: None,
            idempotency_key: format!("demo-{order_id}"),
        },
    )
    .await
    .map_err(message)?;
    payments::mark_paid(state, actor, payment.id, Some("paid at the counter".into()))
        .await
        .map_err(message)?;
    Ok(())
}
