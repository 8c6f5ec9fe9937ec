//! `platform demo-seed`: demo companies to explore in GraphiQL. Running it twice changes nothing.

use anyhow::Context;
use chrono::Utc;
use entity::company;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

struct DemoCompany {
    name: &'static str,
    slug: &'static str,
    business_type: &'static str,
}

const COMPANIES: [DemoCompany; 3] = [
    DemoCompany {
        name: "Cantina da Praça",
        slug: "demo-restaurant",
        business_type: "RESTAURANT",
    },
    DemoCompany {
        name: "Pedal Certo Bicicletas",
        slug: "demo-bike-shop",
        business_type: "BIKE_SHOP",
    },
    DemoCompany {
        name: "Clínica Bem Estar",
        slug: "demo-clinic",
        business_type: "CLINIC",
    },
];

pub async fn seed(db: &DatabaseConnection) -> anyhow::Result<()> {
    for demo in &COMPANIES {
        let existing = company::Entity::find()
            .filter(company::Column::Slug.eq(demo.slug))
            .one(db)
            .await
            .context("Failed to look up demo company")?;
        if existing.is_some() {
            println!("{} ({}) exists already", demo.name, demo.slug);
            continue;
        }
        let now = Utc::now();
        company::Entity::insert(company::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            name: Set(demo.name.into()),
            slug: Set(demo.slug.into()),
            business_type: Set(demo.business_type.into()),
            locale: Set("pt-BR".into()),
            timezone: Set("America/Sao_Paulo".into()),
            currency: Set("BRL".into()),
            status: Set("ACTIVE".into()),
            api_rate_limit: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec(db)
        .await
        .context("Failed to create demo company")?;
        println!("created {} ({})", demo.name, demo.slug);
    }
    Ok(())
}
